//! Property tests of what the agent reads of a checkpoint archive before uploading it: the
//! completeness check never panics and calls an archive complete exactly when it ends in the two
//! zero blocks at a 512-byte boundary; any file name is classified without a panic, and an unsafe
//! one is shown printable. Each property runs with the runner so that all its cases share one
//! folder (a folder per case costs more than the check).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;

use super::*;

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: 10_000,
        ..ProptestConfig::default()
    })
}

/// A complete archive of files with the given contents.
fn archive(files: &[Vec<u8>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, data) in files.iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        let name = format!("checkpoint/pages-{i}.img");
        if b.append_data(&mut h, name, &data[..]).is_err() {
            return Vec::new();
        }
    }
    b.into_inner().unwrap_or_default()
}

/// What [`has_tar_end`] promises, computed from the bytes.
fn ends_like_a_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 1024
        && bytes.len().is_multiple_of(512)
        && bytes[bytes.len() - 1024..].iter().all(|b| *b == 0)
}

/// A whole archive is complete; one cut anywhere, or noise, is complete only when it happens to
/// end in two zero blocks (why the watcher also waits for the size to settle and for the writer
/// to close it).
#[test]
fn truncated_archives_never_panic_and_are_complete_only_with_their_end_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint-a_b-c-2026.tar");
    let cases = (
        // File contents as a length and a fill byte (zero half the time: zeros are what can
        // look like the end blocks); cheaper to generate than random bytes, as telling.
        vec((0..1500_usize, prop_oneof![Just(0_u8), any::<u8>()]), 0..4),
        any::<Index>(),
        vec(any::<u8>(), 0..1100),
        0..3_u8,
    );
    runner()
        .run(&cases, |(files, cut, noise, which)| {
            let files: Vec<Vec<u8>> = files.iter().map(|(n, b)| vec![*b; *n]).collect();
            let whole = archive(&files);
            let bytes = match which {
                0 => whole,
                1 => whole[..cut.index(whole.len() + 1)].to_vec(),
                _ => noise,
            };
            std::fs::write(&path, &bytes)?;
            let complete = has_tar_end(&path)?;
            prop_assert_eq!(complete, ends_like_a_tar(&bytes));
            if which == 0 {
                prop_assert!(complete, "a whole archive is complete");
            }
            Ok(())
        })
        .unwrap();
}

/// Names are never followed or echoed raw: what is not uploaded for an unsafe name carries it
/// escaped, so a log line never holds control characters or raw bytes.
#[test]
fn arbitrary_file_names_never_panic_and_unsafe_ones_are_shown_printable() {
    let dir = tempfile::tempdir().unwrap();
    let stem = vec(
        any::<u8>().prop_filter("not a separator", |b| *b != b'/' && *b != 0),
        0..40,
    );
    runner()
        .run(&(stem, any::<bool>()), |(mut name, tar_suffix)| {
            if tar_suffix {
                name.extend_from_slice(b".tar");
            }
            if name.is_empty() || name == b"." || name == b".." {
                return Ok(());
            }
            let path = dir.path().join(OsStr::from_bytes(&name));
            std::fs::write(&path, b"x")?;
            let classified = classify(&path);
            std::fs::remove_file(&path)?;
            match classified? {
                Ok(c) => {
                    prop_assert!(name.ends_with(b".tar") && !name.starts_with(b"."));
                    prop_assert_eq!(c.name.as_bytes(), &name[..]);
                    prop_assert!(
                        !c.name.chars().any(|ch| ch.is_control() || ch == ' '),
                        "{:?}",
                        c.name
                    );
                }
                Err(Skip::UnsafeName(shown)) => {
                    prop_assert!(!shown.is_empty());
                    prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
                    if std::str::from_utf8(&name).is_err() {
                        prop_assert!(shown.contains("\\x"), "bytes shown as \\xNN: {shown:?}");
                    }
                }
                Err(Skip::NotAnArchive) => {
                    prop_assert!(!name.ends_with(b".tar") || name.starts_with(b"."));
                }
                Err(Skip::NotRegular) => prop_assert!(false, "a regular file"),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn an_unsafe_name_is_shown_escaped_never_raw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(OsStr::from_bytes(b"\x1b[2J\x7fcaf\xe9 x.tar"));
    std::fs::write(&path, b"x").unwrap();
    assert_eq!(
        classify(&path).unwrap(),
        Err(Skip::UnsafeName(r"\u{1b}[2J\u{7f}caf\xe9 x.tar".into()))
    );
}
