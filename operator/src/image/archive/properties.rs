//! Property tests of checkpoint archive validation: whatever the bytes — cut, corrupt, hostile
//! names and links, huge size fields, noise — validation never panics; a refusal is one printable
//! line that shows no raw bytes; an accepted archive holds nothing that leaves it.

use std::path::{Component, Path};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;

/// A string strategy for `pattern`, compiled once (a `&str` strategy compiles its regex anew for
/// every case, which dominates the run time in a debug build).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

const CONFIG: &[u8] = br#"{"name":"counter","rootfsImageName":"docker.io/library/busybox:1.36","rootfsImageRef":"sha256:abc","runtime":"runc"}"#;
const SPEC: &[u8] = br#"{"annotations":{"io.kubernetes.pod.name":"counter-7d9f5","io.kubernetes.pod.namespace":"default"}}"#;

/// Names an attacker or a broken writer may put in an archive.
const NAMES: [&[u8]; 24] = [
    b"../x",
    b"../../etc/cron.d/x",
    b"/etc/passwd",
    b"a/../../b",
    b"./../x",
    b"./",
    b".",
    b"",
    b"//",
    b"a//b",
    b"a\0b",
    b"checkpoint/\x1b[31mred\x1b[0m",
    b"caf\xe9",
    b"\xff\xfe\xfd",
    b"a\nb\r\n",
    b"\x7f\x08\x07",
    "\u{202e}gpj.exe".as_bytes(),
    b"config.dump",
    b"spec.dump",
    b"checkpoint/inventory.img",
    b"checkpoint",
    b"checkpoint/pages-1.img",
    b"\xef\xbf\xbd",
    b"x\"quoted\\",
];

/// Entry types: file, hard link, symlink, char/block device, folder, FIFO, contiguous file,
/// GNU long name/link, pax local/global, GNU sparse, unknown, NUL (old-style file).
const KINDS: [u8; 15] = [
    b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'L', b'K', b'x', b'g', b'S', b'X', 0,
];

/// One tar entry, written as raw header bytes so hostile names reach the validator unchanged.
#[derive(Clone, Debug)]
struct Raw {
    name: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    data: Vec<u8>,
}

impl Raw {
    fn file(name: &[u8], data: &[u8]) -> Raw {
        Raw {
            name: name.to_vec(),
            kind: b'0',
            link: Vec::new(),
            data: data.to_vec(),
        }
    }
}

/// One header block (names and links cut to their 100-byte fields) and its padded data.
fn block(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The archive's bytes and where each header block starts.
fn assemble(entries: &[Raw]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut headers = Vec::new();
    for e in entries {
        // Longer names and links go in GNU long name/link entries before the entry itself.
        for (long, kind) in [(&e.name, b'L'), (&e.link, b'K')] {
            if long.len() > 100 {
                headers.push(out.len());
                out.extend(block(b"././@LongLink", kind, b"", long));
            }
        }
        headers.push(out.len());
        out.extend(block(&e.name, e.kind, &e.link, &e.data));
    }
    out.extend([0; 1024]);
    (out, headers)
}

/// A kubelet-style archive with arbitrary page data.
fn good(pages: &[u8]) -> Vec<Raw> {
    vec![
        Raw::file(b"config.dump", CONFIG),
        Raw::file(b"spec.dump", SPEC),
        Raw {
            kind: b'5',
            ..Raw::file(b"checkpoint", b"")
        },
        Raw::file(b"checkpoint/inventory.img", b"inv"),
        Raw::file(b"checkpoint/pages-1.img", pages),
        Raw {
            kind: b'2',
            link: b"pages-1.img".to_vec(),
            ..Raw::file(b"checkpoint/link-in", b"")
        },
    ]
}

fn name() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => select(&NAMES[..]).prop_map(<[u8]>::to_vec),
        2 => re("[a-z./]{0,24}").prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..100),
        1 => vec(any::<u8>(), 100..300),
    ]
    .boxed()
}

/// What goes into a size field: octal (up to 8 GiB and beyond), base-256, or garbage.
fn size_field() -> BoxedStrategy<[u8; 12]> {
    prop_oneof![
        re("[0-7]{11}").prop_map(|s| {
            let mut f = [0; 12];
            f[..11].copy_from_slice(s.as_bytes());
            f
        }),
        Just(*b"77777777777\0"),
        any::<[u8; 11]>().prop_map(|b| {
            let mut f = [0x80; 12];
            f[1..].copy_from_slice(&b);
            f
        }),
        Just([0xff; 12]),
        any::<[u8; 12]>(),
    ]
    .boxed()
}

/// Recomputes the checksum of the header block at `at` (so a changed field gets past it).
fn fix_checksum(bytes: &mut [u8], at: usize) {
    let Some(h) = bytes.get_mut(at..at + 512) else {
        return;
    };
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Archives: valid ones cut anywhere; with a hostile entry (name, type, link target) put
/// anywhere; with a size field overwritten; mutated byte-wise; or plain noise.
fn archive() -> BoxedStrategy<Vec<u8>> {
    // Page data as a length and a fill byte: cheaper to generate than random bytes, and the
    // reader only cares how long an entry is.
    let pages = (0..1200_usize, any::<u8>()).prop_map(|(n, b)| vec![b; n]);
    prop_oneof![
        (pages.clone(), any::<Index>()).prop_map(|(p, cut)| {
            let (mut bytes, _) = assemble(&good(&p));
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        }),
        (
            pages.clone(),
            any::<Index>(),
            name(),
            select(&KINDS[..]),
            name(),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(p, at, name, kind, link, data)| {
                let mut entries = good(&p);
                let i = at.index(entries.len() + 1);
                entries.insert(
                    i,
                    Raw {
                        name,
                        kind,
                        link,
                        data,
                    },
                );
                assemble(&entries).0
            }),
        (pages.clone(), any::<Index>(), size_field(), any::<bool>()).prop_map(
            |(p, which, field, fix)| {
                let (mut bytes, headers) = assemble(&good(&p));
                let at = headers[which.index(headers.len())];
                bytes[at + 124..at + 136].copy_from_slice(&field);
                if fix {
                    fix_checksum(&mut bytes, at);
                }
                bytes
            }
        ),
        (
            pages,
            vec((any::<Index>(), any::<u8>()), 1..8),
            any::<bool>()
        )
            .prop_map(|(p, changes, fix)| {
                let (mut bytes, headers) = assemble(&good(&p));
                let len = bytes.len();
                for (i, b) in changes {
                    bytes[i.index(len)] = b;
                }
                if fix {
                    for at in headers {
                        fix_checksum(&mut bytes, at);
                    }
                }
                bytes
            }),
        vec(any::<u8>(), 0..2048),
    ]
    .boxed()
}

/// Whether `p` has no absolute or `..` component.
fn relative_inside(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Whether symlink `link` → `target`, resolved from the link's folder without following other
/// links, stays at or below the archive's root.
fn resolves_inside(link: &Path, target: &Path) -> bool {
    let mut depth = link.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}

/// What a refusal must be: one printable line of bounded length, saying what failed. (Bytes the
/// tar reader itself quotes reach us already replaced by U+FFFD when they are not UTF-8.)
fn assert_clear(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(msg.starts_with("failed to "), "{msg}");
    prop_assert!(
        !msg.chars().any(char::is_control),
        "control character in {msg:?}"
    );
    prop_assert!(msg.chars().count() <= 1000, "{} characters", msg.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_checkpoint_archives_never_panic_and_errors_are_printable(bytes in archive()) {
        match validate(&bytes[..], Limits::default()) {
            Err(e) => assert_clear(&e.to_string())?,
            Ok(info) => {
                let mut n = 0;
                for entry in tar::Archive::new(&bytes[..]).entries()? {
                    let entry = entry?;
                    let path = entry.path()?.into_owned();
                    prop_assert!(relative_inside(&path), "accepted {path:?}");
                    let kind = entry.header().entry_type();
                    if kind.is_symlink() || kind.is_hard_link() {
                        let target = entry.link_name()?.unwrap_or_default().into_owned();
                        let inside = if kind.is_symlink() {
                            resolves_inside(&path, &target)
                        } else {
                            relative_inside(&target)
                        };
                        prop_assert!(inside, "accepted link {path:?} -> {target:?}");
                    } else {
                        prop_assert!(
                            kind.is_file() || kind.is_dir()
                                || kind.is_pax_global_extensions() || kind.is_pax_local_extensions(),
                            "accepted {path:?} of type {kind:?}"
                        );
                    }
                    n += 1;
                }
                prop_assert_eq!(n, info.entries);
            }
        }
    }
}

#[test]
fn a_garbage_header_is_refused_without_printing_its_bytes() {
    let (mut bytes, headers) = assemble(&good(b"pages"));
    // A size field of control bytes and invalid UTF-8, checksum fixed: the tar reader quotes it.
    bytes[headers[1] + 124..headers[1] + 136].copy_from_slice(b"\x1b[2J\xff\xfe\x07\x08\n\r\0\0");
    fix_checksum(&mut bytes, headers[1]);
    let e = validate(&bytes[..], Limits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("\\u{1b}[2J"), "{e}");
    assert!(
        e.contains("after \"config.dump\""),
        "names where it broke: {e}"
    );
    assert!(!e.chars().any(char::is_control), "{e:?}");
}

#[test]
fn hostile_names_and_link_targets_are_shown_escaped_and_cut() {
    let mut entries = good(b"pages");
    entries.push(Raw {
        kind: b'2',
        link: b"../../\x1b]0;owned\x07\xff".to_vec(),
        ..Raw::file(b"checkpoint/\x1b[31mred\xe9", b"")
    });
    let e = validate(&assemble(&entries).0[..], Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"entry "checkpoint/\u{1b}[31mred\xe9""#)
            && e.contains(r#"links to "../../\u{1b}]0;owned\u{7}\xff", outside"#),
        "{e}"
    );
    let long = vec![b'a'; 5000];
    let mut entries = good(b"pages");
    entries.push(Raw::file(&[b"../".as_slice(), &long].concat(), b""));
    let e = validate(&assemble(&entries).0[..], Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.len() < 300 && e.contains("a…\" has a `..` component"),
        "{e}"
    );
}
