//! Object-key layout of checkpoint archives in S3, shared by the agent (writer) and the operator
//! (reader).
//!
//! ```text
//! checkpoints/v1/<cluster>/<node>/<archive file name>
//! e.g. checkpoints/v1/cluster1-azure/worker-1/checkpoint-video-7d9f_default-video-2025-09-08T14:20:56Z.tar
//! ```
//!
//! The Go agent used the bare file name, so two nodes (or clusters) producing the same name
//! overwrote each other. Every segment is checked: non-empty, at most 253 bytes, only
//! `[A-Za-z0-9._:+-]`, never `.` or `..`; so a key never escapes its prefix and always parses back.
//! The archive's sha256, computed while uploading, is in the object's metadata ([`META_SHA256`])
//! when the archive went up in one PUT, and in a digest record next to it
//! (`<archive key>.sha256.json`, [`DigestRecord`]) when it went up in parts: the digest is known
//! only after the last part, and S3 metadata cannot be added to an object afterwards without a
//! server-side copy (limited to 5 GiB on AWS, and needing a URL-encoded source key). An archive
//! is ready when either is present.

use std::fmt;

/// Prefix of every archive key; the version lets a future layout live beside this one.
pub const KEY_PREFIX: &str = "checkpoints/v1";
/// User-metadata key holding the hex sha256 of the object's bytes.
pub const META_SHA256: &str = "sha256";
/// User-metadata key holding the node that produced the archive.
pub const META_NODE: &str = "node";
/// User-metadata key holding the cluster that produced the archive.
pub const META_CLUSTER: &str = "cluster";

/// User-metadata key naming how the object is encrypted ([`ENCRYPTION_AGE`]); absent: plaintext.
/// An encrypted object's `sha256` (metadata or digest record) is still the PLAINTEXT archive's,
/// which is what the image layer and every reader after decryption verify.
pub const META_ENCRYPTION: &str = "encryption";
/// [`META_ENCRYPTION`] value: the object is an age file (X25519 recipients, age-encryption.org/v1).
pub const ENCRYPTION_AGE: &str = "age";
/// User-metadata key holding the plaintext archive's size in bytes (encrypted objects only; the
/// object's own size is the ciphertext's).
pub const META_PLAINTEXT_SIZE: &str = "plaintext-size";

/// Suffix of the digest record beside an archive uploaded in parts.
pub const DIGEST_SUFFIX: &str = ".sha256.json";
/// Largest digest record a reader accepts.
pub const DIGEST_RECORD_MAX_BYTES: usize = 4096;

/// What the agent records about a finished archive it uploaded in parts
/// (`<archive key>.sha256.json`, JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestRecord {
    /// Hex sha256 of the whole archive.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The local file's modification time in ns (what the agent dedupes on).
    #[serde(default)]
    pub source_mtime: String,
}

/// Why a digest record cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error(
        "failed to read digest record {key}: it is larger than {DIGEST_RECORD_MAX_BYTES} bytes"
    )]
    TooLarge { key: String },
    #[error("failed to read digest record {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl DigestRecord {
    /// The record's bytes as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the record stored at `key` (input from the bucket: every defect is an error naming
    /// the key, and no byte of a garbage record is echoed).
    pub fn parse(key: &str, bytes: &[u8]) -> Result<DigestRecord, DigestError> {
        if bytes.len() > DIGEST_RECORD_MAX_BYTES {
            return Err(DigestError::TooLarge {
                key: key.to_owned(),
            });
        }
        let invalid = |reason: &str| DigestError::Invalid {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let record: DigestRecord = serde_json::from_slice(bytes).map_err(|e| {
            invalid(&format!(
                "not a digest record (JSON error at line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        if record.sha256.len() != 64 || !record.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("sha256 is not 64 hex digits"));
        }
        Ok(record)
    }
}

/// Where one checkpoint archive lives in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveKey {
    pub cluster: String,
    pub node: String,
    pub archive: String,
}

/// Why a key or a key segment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("failed to build object key: {part} {value:?} {reason}")]
    BadSegment {
        part: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("failed to parse object key {0:?}: expected {KEY_PREFIX}/<cluster>/<node>/<archive>")]
    Layout(String),
}

fn check_segment(part: &'static str, value: &str) -> Result<(), KeyError> {
    let bad = |reason| {
        Err(KeyError::BadSegment {
            part,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("is empty");
    }
    if value.len() > 253 {
        return bad("is longer than 253 bytes");
    }
    if value == "." || value == ".." {
        return bad("is a relative path component");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
    {
        return bad("has a character outside [A-Za-z0-9._:+-]");
    }
    Ok(())
}

impl ArchiveKey {
    /// A key for `archive` (a file name, not a path) from `node` of `cluster`.
    pub fn new(cluster: &str, node: &str, archive: &str) -> Result<ArchiveKey, KeyError> {
        check_segment("cluster", cluster)?;
        check_segment("node", node)?;
        check_segment("archive", archive)?;
        Ok(ArchiveKey {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            archive: archive.to_owned(),
        })
    }

    /// Parses a key written by [`ArchiveKey::to_string`].
    pub fn parse(key: &str) -> Result<ArchiveKey, KeyError> {
        let rest = key
            .strip_prefix(KEY_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| KeyError::Layout(key.to_owned()))?;
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(n), Some(a), None) => ArchiveKey::new(c, n, a),
            _ => Err(KeyError::Layout(key.to_owned())),
        }
    }

    /// The key of this archive's digest record ([`DigestRecord`]).
    pub fn digest_key(&self) -> String {
        format!("{self}{DIGEST_SUFFIX}")
    }

    /// The prefix listing every archive of one node.
    pub fn node_prefix(cluster: &str, node: &str) -> Result<String, KeyError> {
        check_segment("cluster", cluster)?;
        check_segment("node", node)?;
        Ok(format!("{KEY_PREFIX}/{cluster}/{node}/"))
    }
}

impl fmt::Display for ArchiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{KEY_PREFIX}/{}/{}/{}",
            self.cluster, self.node, self.archive
        )
    }
}

/// A kubelet checkpoint archive name, `checkpoint-<pod>_<namespace>-<container>-<RFC3339 time>.tar`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveName<'a> {
    pub pod: &'a str,
    /// `<namespace>-<container>`: both may contain `-`, so they cannot be told apart by the name
    /// alone; use [`ArchiveName::is_for`] with the known namespace and container.
    pub namespace_and_container: &'a str,
    pub timestamp: &'a str,
}

impl<'a> ArchiveName<'a> {
    /// Parses a kubelet archive file name; `None` when it is not one.
    pub fn parse(name: &'a str) -> Option<ArchiveName<'a>> {
        let body = name.strip_prefix("checkpoint-")?.strip_suffix(".tar")?;
        let (pod, rest) = body.split_once('_')?;
        // RFC 3339 with seconds and an offset: at least `YYYY-MM-DDTHH:MM:SSZ` (20 bytes).
        let t_at = rest
            .char_indices()
            .rev()
            .find(|&(_, c)| c == 'T')
            .map(|(i, _)| i)?;
        let ts_start = t_at.checked_sub(10)?;
        if ts_start == 0 || rest.as_bytes().get(ts_start - 1) != Some(&b'-') {
            return None;
        }
        let (ns_ctr, timestamp) = (&rest[..ts_start - 1], &rest[ts_start..]);
        if pod.is_empty() || ns_ctr.is_empty() || timestamp.len() < 20 {
            return None;
        }
        Some(ArchiveName {
            pod,
            namespace_and_container: ns_ctr,
            timestamp,
        })
    }

    /// Whether this archive holds `container` of `namespace/pod`.
    pub fn is_for(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.pod == pod && self.namespace_and_container == format!("{namespace}-{container}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prints_and_parses_back_to_itself() {
        let key = ArchiveKey::new(
            "cluster1-azure",
            "worker-1",
            "checkpoint-web_default-nginx-2025-09-08T14:20:56Z.tar",
        )
        .unwrap();
        let text = key.to_string();
        assert_eq!(
            text,
            "checkpoints/v1/cluster1-azure/worker-1/checkpoint-web_default-nginx-2025-09-08T14:20:56Z.tar"
        );
        assert_eq!(ArchiveKey::parse(&text).unwrap(), key);
    }

    #[test]
    fn a_digest_record_round_trips_and_a_bad_one_is_named_without_its_bytes() {
        let key =
            ArchiveKey::new("c", "n", "checkpoint-p_ns-c-2026-12-02T10:00:00+01:00.tar").unwrap();
        assert!(key.digest_key().ends_with(".tar.sha256.json"));
        let r = DigestRecord {
            sha256: "a".repeat(64),
            size: 7,
            source_mtime: "1".into(),
        };
        assert_eq!(DigestRecord::parse("k", &r.to_bytes()), Ok(r));
        let garbage = b"\x00\xffSECRET-BYTES";
        let e = DigestRecord::parse("k", garbage).unwrap_err().to_string();
        assert!(
            e.contains("digest record k") && !e.contains("SECRET"),
            "{e}"
        );
        let short = br#"{"sha256": "abc", "size": 1}"#;
        assert!(
            DigestRecord::parse("k", short)
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(matches!(
            DigestRecord::parse("k", &vec![b' '; 5000]),
            Err(DigestError::TooLarge { .. })
        ));
    }

    #[test]
    fn two_nodes_with_the_same_archive_name_get_different_keys() {
        let a = ArchiveKey::new("c", "n1", "checkpoint-x.tar").unwrap();
        let b = ArchiveKey::new("c", "n2", "checkpoint-x.tar").unwrap();
        assert_ne!(a.to_string(), b.to_string());
    }

    #[test]
    fn segments_that_could_escape_or_confuse_the_layout_are_refused() {
        for (c, n, a) in [
            ("..", "n", "a.tar"),
            ("c", ".", "a.tar"),
            ("c", "n", "../../etc/passwd"),
            ("c", "n/x", "a.tar"),
            ("c", "n", "a b.tar"),
            ("c", "n", "caf\u{e9}.tar"),
            ("", "n", "a.tar"),
            ("c", "n", "a\n.tar"),
        ] {
            let err = ArchiveKey::new(c, n, a).unwrap_err();
            assert!(
                matches!(err, KeyError::BadSegment { .. }),
                "{c:?}/{n:?}/{a:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn keys_outside_the_layout_do_not_parse() {
        for key in [
            "a.tar",
            "checkpoints/v1/c/n",
            "checkpoints/v1/c/n/a/b",
            "checkpoints/v2/c/n/a",
            "checkpoints/v1/c/../a",
        ] {
            assert!(ArchiveKey::parse(key).is_err(), "{key}");
        }
    }

    #[test]
    fn a_kubelet_archive_name_is_split_into_pod_namespace_container_and_time() {
        let name = ArchiveName::parse(
            "checkpoint-video-7d9f-x2_default-video-server-2025-09-08T14:20:56Z.tar",
        )
        .unwrap();
        assert_eq!(name.pod, "video-7d9f-x2");
        assert_eq!(name.timestamp, "2025-09-08T14:20:56Z");
        assert!(name.is_for("default", "video-7d9f-x2", "video-server"));
        assert!(!name.is_for("default-video", "video-7d9f-x2", "server-x"));
    }

    #[test]
    fn names_that_are_not_kubelet_archives_do_not_parse() {
        for n in [
            "foo.tar",
            "checkpoint-.tar",
            "checkpoint-pod_ns-c.tar",
            "checkpoint-pod_ns-c-2025.tar.gz",
            "x",
        ] {
            assert!(ArchiveName::parse(n).is_none(), "{n}");
        }
    }
}
