//! Encryption on the node (`--encryption-recipients-file`) against a REAL s3s-fs (SigV4,
//! multipart), REAL archives made by runc + CRIU, and the REAL age CLI (Debian `age` 1.1.1:
//! `age-keygen` makes the key pair, `age -d` decrypts what was stored). The age CLI stands in for
//! the operator's decryption: both read the same age-encryption.org/v1 file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::common::*;
use checkpoint_agent::metrics::Metrics;
use checkpoint_agent::upload::{Outcome, UploadError, Uploader, UploaderConfig};
use tokio_util::sync::CancellationToken;
use transition_crds::storage::{
    ArchiveKey, DigestRecord, ENCRYPTION_AGE, META_ENCRYPTION, META_PLAINTEXT_SIZE, META_SHA256,
};
use transition_testlab::S3Server;

/// A real CRIU archive of ~12 MiB: more than two 5 MiB parts once encrypted.
const MID: (&str, u32) = ("state-12mib", 12);
/// The S3 minimum part size, so the mid archive goes up in three parts.
const PART_MIB: u64 = 5;

/// An age key pair made by the real `age-keygen` in `dir`: (identity file, recipient).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let identity = dir.join(format!("{name}-identity.txt"));
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen (hack/install.sh apt installs Debian's age)");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (identity, recipient)
}

/// The `operator` key pair and a recipients file naming its recipient alone: (identity file,
/// recipients file).
fn operator_recipients(dir: &Path) -> (PathBuf, PathBuf) {
    let (identity, recipient) = key_pair(dir, "operator");
    let recipients = dir.join("recipients.txt");
    std::fs::write(&recipients, format!("{recipient}\n")).unwrap();
    (identity, recipients)
}

fn sealing_uploader(
    s3: &S3Server,
    state: &Path,
    recipients_file: Option<&Path>,
    metrics: Arc<Metrics>,
) -> Uploader {
    let config = UploaderConfig {
        state_dir: state.to_path_buf(),
        part_size: PART_MIB << 20,
        parallelism: 2,
        max_attempts: 8,
        recipients_file: recipients_file.map(Path::to_path_buf),
    };
    Uploader::new(store(s3, &s3.secret_key), config, metrics)
}

/// `age -d -i identity stored` with the real CLI.
fn age_decrypt(identity: &Path, stored: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(stored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The offsets in `stored` where a 32-byte block of `plain` (every block at a multiple of 32)
/// appears: empty means no run of 63 or more plaintext bytes, and no block-aligned 32-byte run,
/// is anywhere in the object.
fn plaintext_runs_in(plain: &[u8], stored: &[u8]) -> Vec<usize> {
    let blocks: HashSet<&[u8]> = plain.chunks_exact(32).collect();
    stored
        .windows(32)
        .enumerate()
        .filter(|(_, w)| blocks.contains(w))
        .map(|(i, _)| i)
        .take(5)
        .collect()
}

#[tokio::test]
async fn an_encrypted_archive_holds_no_plaintext_and_the_age_cli_decrypts_it() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = key_pair(dir.path(), "operator");
    // A second recipient (a rotation in progress): either identity decrypts.
    let (other_identity, other) = key_pair(dir.path(), "next");
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        format!("# operator key\n{recipient}\n\n# next key\n{other}\n"),
    )
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let up = sealing_uploader(
        &s3,
        &dir.path().join("state"),
        Some(&recipients),
        metrics.clone(),
    );
    let mut read = 0;
    for (fixture, pod) in [(SMALL, "small"), (MID, "mid")] {
        let path = archive_in(dir.path(), fixture, pod);
        let c = candidate(&path);
        read += c.size;
        let key = ArchiveKey::new("cluster1-azure", "worker-1", &c.name).unwrap();
        let outcome = up
            .upload(&c, &key, &CancellationToken::new())
            .await
            .unwrap();
        let plain = std::fs::read(&path).unwrap();
        let local = sha256_file(&path);
        assert_eq!(outcome.sha256(), local, "the digest is the plaintext's");

        let stored_path = s3.object_path(&key.to_string());
        let stored = std::fs::read(&stored_path).unwrap();
        assert!(
            stored.starts_with(b"age-encryption.org/v1\n"),
            "{pod}: an age file"
        );
        assert!(
            matches!(outcome, Outcome::Uploaded { bytes, .. } if bytes == stored.len() as u64),
            "{outcome:?}"
        );
        if pod == "small" {
            assert!(
                !plaintext_runs_in(&plain, &plain).is_empty(),
                "the search finds plaintext where there is some"
            );
        }
        assert_eq!(
            plaintext_runs_in(&plain, &stored),
            Vec::<usize>::new(),
            "{pod}: plaintext found in the stored object"
        );
        assert!(
            age_decrypt(&identity, &stored_path) == plain,
            "{pod}: the age CLI decrypts the stored object to the archive, byte for byte"
        );
        assert!(
            age_decrypt(&other_identity, &stored_path) == plain,
            "{pod}: so does the second recipient's identity"
        );

        let head = up.store().head(&key.to_string()).await.unwrap().unwrap();
        assert_eq!(head.size, stored.len() as u64);
        assert!(head.size > c.size, "the ciphertext is larger");
        assert_eq!(
            head.metadata.get(META_ENCRYPTION).map(String::as_str),
            Some(ENCRYPTION_AGE)
        );
        assert_eq!(
            head.metadata.get(META_PLAINTEXT_SIZE),
            Some(&c.size.to_string())
        );
        assert_eq!(
            head.metadata.get("size"),
            Some(&head.size.to_string()),
            "`size` is the object's size"
        );
        let record_file = s3.object_path(&key.digest_key());
        if pod == "small" {
            assert!(head.size <= PART_MIB << 20, "fits one part: {}", head.size);
            assert_eq!(head.metadata.get(META_SHA256), Some(&local), "one PUT");
            assert!(!record_file.exists());
        } else {
            assert!(
                head.size > 2 * (PART_MIB << 20),
                "three parts: {}",
                head.size
            );
            assert_eq!(head.metadata.get(META_SHA256), None, "in parts");
            let record =
                DigestRecord::parse("record", &std::fs::read(&record_file).unwrap()).unwrap();
            assert_eq!(
                record.sha256, local,
                "the record holds the plaintext's sha256"
            );
            assert_eq!(
                record.size, head.size,
                "and the object's size, which readers compare with HEAD"
            );
        }
        assert_eq!(
            up.recorded_sha256(&key.to_string(), &head).await.unwrap(),
            Some(local)
        );
        assert_eq!(checkpoint_agent::upload::archive_size(&head), Some(c.size));
    }
    assert_eq!(
        metrics.read_bytes.get(),
        read,
        "each archive was read from disk exactly once"
    );
    assert_eq!(metrics.encrypted_uploads.get(), 2);
}

#[tokio::test]
async fn a_second_upload_of_an_encrypted_archive_is_deduplicated() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, recipients) = operator_recipients(dir.path());
    let state = dir.path().join("state");
    for (fixture, pod) in [(SMALL, "small"), (MID, "mid")] {
        let (path, c, key) = archive_with_key(dir.path(), fixture, pod);
        let first = sealing_uploader(&s3, &state, Some(&recipients), Arc::new(Metrics::default()))
            .upload(&c, &key, &CancellationToken::new())
            .await
            .unwrap();
        assert!(matches!(first, Outcome::Uploaded { .. }), "{first:?}");

        let second = Arc::new(Metrics::default());
        let outcome = sealing_uploader(&s3, &state, Some(&recipients), second.clone())
            .upload(&c, &key, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::AlreadyPresent {
                sha256: sha256_file(&path)
            },
            "{pod}"
        );
        assert_eq!(second.uploaded_bytes.get(), 0, "{pod}: no bytes sent");
        assert_eq!(
            second.read_bytes.get(),
            0,
            "{pod}: the archive was not read"
        );
    }
}

#[tokio::test]
async fn turning_encryption_on_or_off_uploads_the_archive_again() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipients) = operator_recipients(dir.path());
    let state = dir.path().join("state");
    let (path, c, key) = archive_with_key(dir.path(), SMALL, "toggle");
    let plain = std::fs::read(&path).unwrap();
    let stored = s3.object_path(&key.to_string());
    let upload = |file: Option<&Path>| {
        let up = sealing_uploader(&s3, &state, file, Arc::new(Metrics::default()));
        let (c, key) = (c.clone(), key.clone());
        async move { up.upload(&c, &key, &CancellationToken::new()).await }
    };

    let plaintext = upload(None).await.unwrap();
    assert!(
        matches!(plaintext, Outcome::Uploaded { .. }),
        "{plaintext:?}"
    );
    assert_eq!(std::fs::read(&stored).unwrap(), plain);

    let sealed = upload(Some(&recipients)).await.unwrap();
    assert!(
        matches!(sealed, Outcome::Uploaded { .. }),
        "a plaintext object is replaced once encryption is on: {sealed:?}"
    );
    assert_eq!(age_decrypt(&identity, &stored), plain);

    let again = upload(None).await.unwrap();
    assert!(
        matches!(again, Outcome::Uploaded { .. }),
        "an encrypted object is replaced once encryption is off: {again:?}"
    );
    assert_eq!(std::fs::read(&stored).unwrap(), plain);
    let head = s3_head(&s3, &key).await;
    assert_eq!(head.metadata.get(META_ENCRYPTION), None);
    assert_eq!(head.metadata.get(META_PLAINTEXT_SIZE), None);
}

async fn s3_head(s3: &S3Server, key: &ArchiveKey) -> checkpoint_agent::store::ObjectInfo {
    store(s3, &s3.secret_key)
        .head(&key.to_string())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_bad_recipients_file_uploads_nothing_and_the_error_names_the_file() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = key_pair(dir.path(), "operator");
    let secret_line = std::fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    let (_, c, key) = archive_with_key(dir.path(), SMALL, "refused");
    let cases = [
        (
            "empty.txt",
            "# nobody yet\n\n".to_owned(),
            "names no recipient",
        ),
        (
            "garbled.txt",
            format!("{recipient}\nage1garbled\n"),
            "line 2",
        ),
        // The identity file itself mounted by mistake (age-keygen writes comments, then the key).
        (
            "identity.txt",
            std::fs::read_to_string(&identity).unwrap(),
            "SECRET key",
        ),
        ("absent.txt", String::new(), "No such file"),
    ];
    for (name, text, says) in cases {
        let file = dir.path().join(name);
        if name != "absent.txt" {
            std::fs::write(&file, &text).unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let err = sealing_uploader(&s3, &dir.path().join("state"), Some(&file), metrics.clone())
            .upload(&c, &key, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, UploadError::Recipients(_)), "{err:?}");
        assert_eq!(err.kind(), "encryption");
        let msg = err.to_string();
        assert!(
            msg.contains(&file.display().to_string()) && msg.contains(says),
            "{name}: {msg}"
        );
        assert!(
            !format!("{msg} {err:?}").contains(&secret_line[15..]),
            "the secret key is never echoed: {msg}"
        );
        assert_eq!(
            metrics.s3_requests.get(),
            0,
            "{name}: S3 was not even asked"
        );
        assert_eq!(
            metrics.read_bytes.get(),
            0,
            "{name}: the archive was not read"
        );
    }
    assert!(
        store(&s3, &s3.secret_key)
            .list("checkpoints/")
            .await
            .unwrap()
            .is_empty(),
        "nothing was uploaded, in plaintext or otherwise"
    );
}

/// A crash in the middle of an encrypted multipart upload leaves its record and parts behind;
/// the next attempt cannot continue them (a fresh file key), so it aborts them and starts over.
#[tokio::test]
async fn an_interrupted_encrypted_multipart_upload_is_aborted_and_sent_again_from_the_start() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipients) = operator_recipients(dir.path());
    let state = dir.path().join("state");
    let (path, c, key) = archive_with_key(dir.path(), MID, "crash");

    // The "crash": the upload task is dropped once its first part is on the server.
    let metrics = Arc::new(Metrics::default());
    let up = sealing_uploader(&s3, &state, Some(&recipients), metrics.clone());
    let (c2, key2) = (c.clone(), key.clone());
    let task = tokio::spawn(async move { up.upload(&c2, &key2, &CancellationToken::new()).await });
    eventually(60, "a first part uploaded", || {
        metrics.uploaded_bytes.get() >= PART_MIB << 20
    })
    .await;
    task.abort();
    let _ = task.await;
    let record = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the interrupted upload's record");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let old_id = record["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(record["encrypted"], true);
    let store = store(&s3, &s3.secret_key);
    assert!(
        !store
            .list_parts(&key.to_string(), &old_id)
            .await
            .unwrap()
            .is_empty()
    );

    let outcome = sealing_uploader(&s3, &state, Some(&recipients), Arc::new(Metrics::default()))
        .upload(&c, &key, &CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Uploaded {
                resumed_parts: 0,
                ..
            }
        ),
        "sent again from the start: {outcome:?}"
    );
    let old_parts = store.list_parts(&key.to_string(), &old_id).await;
    assert!(
        old_parts.as_ref().map_or(true, Vec::is_empty),
        "the interrupted upload was aborted: {old_parts:?}"
    );
    assert_eq!(
        age_decrypt(&identity, &s3.object_path(&key.to_string())),
        std::fs::read(&path).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "no record left behind"
    );
}
