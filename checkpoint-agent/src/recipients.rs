//! The age recipients file of `--encryption-recipients-file`: who can decrypt the archives this
//! node uploads.
//!
//! One age X25519 recipient (`age1…`) per line; blank lines and lines starting with `#` are
//! ignored; several recipients mean any one of their identities decrypts. The file is read again
//! for every archive, so rotating the mounted Secret needs no restart. It is input we refuse
//! rather than guess about: a line that does not parse fails the upload naming the file and the
//! line number, a secret key (`AGE-SECRET-KEY-…`) pasted by mistake is refused without a byte of
//! it in the error, and a file with no recipient is an error — never a silent plaintext upload.

#![expect(
    deprecated,
    reason = "age 0.13 deprecates classic X25519 recipients in favour of post-quantum ones; the \
              operator's identities and the age 1.1 CLI are X25519 (issue 17)"
)]

use std::path::Path;
use std::str::FromStr;

/// An age X25519 recipient (`age1…`). Post-quantum recipients (`age1pq1…`) are not accepted yet:
/// the age 1.1 CLI of Debian and the operator's identities are X25519.
pub type Recipient = age::x25519::Recipient;

/// Largest recipients file read (a few thousand recipients; a wrongly mounted file is refused
/// instead of read whole).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why the recipients file cannot be used. No variant holds a byte of the file's lines.
#[derive(Debug, thiserror::Error)]
pub enum RecipientsError {
    #[error("failed to read the encryption recipients file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to read the encryption recipients file {path}: it is larger than {MAX_FILE_BYTES} bytes"
    )]
    TooLarge { path: String },
    #[error(
        "failed to read the encryption recipients file {path}: line {line} is not an age X25519 recipient (age1…): {reason}"
    )]
    Invalid {
        path: String,
        line: usize,
        reason: &'static str,
    },
    #[error(
        "failed to read the encryption recipients file {path}: line {line} holds an age SECRET key (AGE-SECRET-KEY-…), which must never reach a node; put its public recipient (age-keygen -y) there instead, and rotate that key"
    )]
    SecretKey { path: String, line: usize },
    #[error(
        "failed to read the encryption recipients file {path}: it names no recipient; refusing to upload archives unencrypted"
    )]
    Empty { path: String },
}

/// Reads and parses the recipients file at `path`.
pub fn read_recipients(path: &Path) -> Result<Vec<Recipient>, RecipientsError> {
    let shown = path.display().to_string();
    let read_err = |source| RecipientsError::Read {
        path: shown.clone(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(RecipientsError::TooLarge { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_recipients(&shown, &text)
}

/// Parses the text of a recipients file; `path` only names it in errors.
pub fn parse_recipients(path: &str, text: &str) -> Result<Vec<Recipient>, RecipientsError> {
    let mut recipients = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line
            .get(..SECRET_KEY_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(SECRET_KEY_PREFIX))
        {
            return Err(RecipientsError::SecretKey {
                path: path.to_owned(),
                line: index + 1,
            });
        }
        let recipient = Recipient::from_str(line).map_err(|reason| RecipientsError::Invalid {
            path: path.to_owned(),
            line: index + 1,
            reason,
        })?;
        recipients.push(recipient);
    }
    if recipients.is_empty() {
        return Err(RecipientsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(recipients)
}

/// How every age secret key (identity) starts.
const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-";

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn key_pair() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        (
            identity.to_public().to_string(),
            identity.to_string().expose_secret().to_owned(),
        )
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_every_recipient_is_kept() {
        let (a, _) = key_pair();
        let (b, _) = key_pair();
        let text = format!("# operator, 2026 key\n\n  {a}  \n# next key (rotation)\n{b}\n");
        let got = parse_recipients("/etc/r", &text).unwrap();
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn a_line_that_does_not_parse_is_named_by_file_and_line_number() {
        let (a, _) = key_pair();
        let text = format!("# ok\n{a}\nage1notavalidkey\n");
        let err = parse_recipients("/etc/agent/recipients.txt", &text).unwrap_err();
        assert!(
            matches!(err, RecipientsError::Invalid { line: 3, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/agent/recipients.txt") && msg.contains("line 3"),
            "{msg}"
        );
        assert!(
            !msg.contains("age1notavalidkey"),
            "the line is not echoed: {msg}"
        );
    }

    /// A secret key pasted into the node's file is refused, and no part of it reaches a log.
    #[test]
    fn a_secret_key_is_refused_without_being_echoed() {
        let (a, secret) = key_pair();
        for line in [secret.clone(), secret.to_lowercase()] {
            let text = format!("{a}\n\n{line}\n");
            let err = parse_recipients("/etc/r", &text).unwrap_err();
            assert!(
                matches!(err, RecipientsError::SecretKey { line: 3, .. }),
                "{err:?}"
            );
            let shown = format!("{err} {err:?}");
            let body = &secret["AGE-SECRET-KEY-".len()..];
            assert!(
                !shown.to_uppercase().contains(&body[..8]),
                "no byte of the key is shown: {shown}"
            );
            assert!(shown.contains("line 3"), "{shown}");
        }
    }

    #[test]
    fn a_file_without_recipients_is_an_error_not_a_plaintext_upload() {
        for text in ["", "\n\n", "# only a comment\n   \n"] {
            let err = parse_recipients("/etc/r", text).unwrap_err();
            assert!(matches!(err, RecipientsError::Empty { .. }), "{err:?}");
            assert!(err.to_string().contains("/etc/r"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let err = read_recipients(&path).unwrap_err();
        assert!(matches!(err, RecipientsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}
