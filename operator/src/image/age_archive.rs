//! Archives the agent encrypted with age (`encryption: age` in the object's metadata, see
//! `transition_crds::storage::META_ENCRYPTION`): the operator's identities (`AGE-SECRET-KEY-1…`
//! lines of `--archive-identity-file`: X25519, the agent's recipients; age's post-quantum
//! `AGE-SECRET-KEY-PQ-1…` are accepted too) and the decrypting reader the image builder reads
//! through.
//!
//! The plaintext never touches disk: the age stream is decrypted chunk by chunk on the builder's
//! reading thread, so the sha256 checked against the agent's record is the plaintext's. Several
//! identities in the file are a rotation: an archive opens with whichever identity it was
//! encrypted to. The file is read at every build, so a rotated Secret needs no restart.
//!
//! Nothing here logs or returns key material: a line that does not parse is named by its number,
//! never echoed.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Largest identity file read (a few hundred identities at ~75 bytes each).
pub const IDENTITY_FILE_MAX_BYTES: u64 = 64 << 10;

/// Why an archive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    #[error("failed to read the age identity file {path}: {source}")]
    ReadIdentities {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the age identity file {path}: it is larger than {max} bytes")]
    IdentityFileTooLarge { path: String, max: u64 },
    #[error(
        "failed to read the age identity file {path}: line {line} is not an age identity (AGE-SECRET-KEY-1…)"
    )]
    BadIdentityLine { path: String, line: usize },
    #[error("failed to read the age identity file {path}: it holds no identity")]
    NoIdentities { path: String },
    #[error(
        "failed to decrypt {object}: it is age-encrypted and no age identity is configured (--archive-identity-file)"
    )]
    NoIdentityConfigured { object: String },
    #[error("failed to decrypt {object}: no identity in {path} opens it")]
    NoMatchingIdentity { object: String, path: String },
    #[error("failed to decrypt {object}: {source}")]
    Decrypt {
        object: String,
        #[source]
        source: age::DecryptError,
    },
}

/// The operator's age identities (Debug never shows them).
pub struct AgeIdentities {
    /// Where they were read from (named in errors).
    path: String,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeIdentities")
            .field("path", &self.path)
            .field("count", &self.identities.len())
            .finish()
    }
}

impl AgeIdentities {
    /// Parses an identity file's text (pure): one `AGE-SECRET-KEY-1…` per line; blank lines and
    /// `#` comments (the `# public key: age1…` line age-keygen writes) are skipped.
    pub fn parse(path: &str, text: &str) -> Result<AgeIdentities, AgeError> {
        let mut identities = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity: Box<dyn age::Identity + Send + Sync> =
                match line.parse::<age::x25519::Identity>() {
                    Ok(x25519) => Box::new(x25519),
                    Err(_) => Box::new(line.parse::<age::pq::Identity>().map_err(|_| {
                        AgeError::BadIdentityLine {
                            path: path.to_owned(),
                            line: i + 1,
                        }
                    })?),
                };
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err(AgeError::NoIdentities {
                path: path.to_owned(),
            });
        }
        Ok(AgeIdentities {
            path: path.to_owned(),
            identities,
        })
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<AgeIdentities, AgeError> {
        let shown = path.display().to_string();
        let io = |source| AgeError::ReadIdentities {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(IDENTITY_FILE_MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > IDENTITY_FILE_MAX_BYTES {
            return Err(AgeError::IdentityFileTooLarge {
                path: shown,
                max: IDENTITY_FILE_MAX_BYTES,
            });
        }
        AgeIdentities::parse(&shown, &text)
    }

    /// How many identities the file holds.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

/// How the image builder reads an archive: as it is, or decrypting an age file.
#[derive(Clone, Debug, Default)]
pub enum Unseal {
    /// A plaintext archive.
    #[default]
    Plain,
    /// An age file; `object` names it in errors (`s3://bucket/key`); `identities` `None`: none is
    /// configured (opening fails with [`AgeError::NoIdentityConfigured`]).
    Age {
        object: String,
        identities: Option<Arc<AgeIdentities>>,
    },
}

impl Unseal {
    /// How to read `object`: `encrypted` from its metadata; the identity file is read only for an
    /// encrypted object (so a rotation needs no restart, and plaintext objects need no file).
    pub fn for_object(
        object: &str,
        encrypted: bool,
        identity_file: Option<&Path>,
    ) -> Result<Unseal, AgeError> {
        if !encrypted {
            return Ok(Unseal::Plain);
        }
        let identities = identity_file
            .map(AgeIdentities::read)
            .transpose()?
            .map(Arc::new);
        Ok(Unseal::Age {
            object: object.to_owned(),
            identities,
        })
    }

    /// The plaintext of `source`. Blocking (reads the age header): call it on the reading thread.
    pub fn open<R>(self, source: R) -> Result<Box<dyn Read + Send>, AgeError>
    where
        R: Read + Send + 'static,
    {
        let (object, identities) = match self {
            Unseal::Plain => return Ok(Box::new(source)),
            Unseal::Age { object, identities } => (object, identities),
        };
        let identities = identities.ok_or_else(|| AgeError::NoIdentityConfigured {
            object: object.clone(),
        })?;
        let decrypt_error = |source: age::DecryptError| match source {
            age::DecryptError::NoMatchingKeys => AgeError::NoMatchingIdentity {
                object: object.clone(),
                path: identities.path.clone(),
            },
            source => AgeError::Decrypt {
                object: object.clone(),
                source,
            },
        };
        let decryptor = age::Decryptor::new(source).map_err(decrypt_error)?;
        let reader = decryptor
            .decrypt(
                identities
                    .identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(decrypt_error)?;
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
#[expect(
    deprecated,
    reason = "X25519 is the agent's wire format (transition_crds::storage)"
)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Write;

    fn encrypt(plain: &[u8], to: &age::x25519::Recipient) -> Vec<u8> {
        let e =
            age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = e.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn identity_files_skip_comments_and_blank_lines_and_keep_every_identity() {
        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let text = format!(
            "# created: 2026-12-01\n# public key: {}\n{}\n\n  {}  \n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let ids = AgeIdentities::parse("ids.txt", &text).unwrap();
        assert_eq!(ids.len(), 2);
        let shown = format!("{ids:?}");
        assert!(
            !shown.contains("AGE-SECRET-KEY"),
            "Debug shows no key: {shown}"
        );
    }

    /// A line that does not parse is named by number and never echoed: it may be a mangled key.
    #[test]
    fn a_bad_identity_line_is_named_by_number_without_echoing_it() {
        let good = age::x25519::Identity::generate();
        let secret = good.to_string();
        let mangled = format!("{}X", secret.expose_secret());
        let text = format!("# comment\n{}\n{mangled}\n", secret.expose_secret());
        let e = AgeIdentities::parse("/etc/ids", &text).unwrap_err();
        assert!(
            matches!(e, AgeError::BadIdentityLine { line: 3, .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("/etc/ids") && msg.contains("line 3"), "{msg}");
        let body = &mangled["AGE-SECRET-KEY-1".len()..];
        assert!(!msg.contains(body) && !msg.contains(&body[..8]), "{msg}");
        assert!(matches!(
            AgeIdentities::parse("f", "# only a comment\n\n"),
            Err(AgeError::NoIdentities { .. })
        ));
    }

    #[test]
    fn an_age_file_opens_with_any_identity_of_a_rotation_and_not_with_a_stranger() {
        let (old, new, stranger) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let plain = b"checkpoint archive bytes".repeat(5000);
        let sealed = encrypt(&plain, &old.to_public());
        let both = format!(
            "{}\n{}\n",
            new.to_string().expose_secret(),
            old.to_string().expose_secret()
        );
        let unseal = Unseal::Age {
            object: "s3://b/k.tar".into(),
            identities: Some(Arc::new(AgeIdentities::parse("ids", &both).unwrap())),
        };
        let mut out = Vec::new();
        unseal
            .open(std::io::Cursor::new(sealed.clone()))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);

        let wrong = Unseal::Age {
            object: "s3://b/k.tar".into(),
            identities: Some(Arc::new(
                AgeIdentities::parse("ids", stranger.to_string().expose_secret()).unwrap(),
            )),
        };
        let e = wrong
            .open(std::io::Cursor::new(sealed.clone()))
            .err()
            .unwrap();
        assert!(matches!(e, AgeError::NoMatchingIdentity { .. }), "{e}");
        assert!(e.to_string().contains("s3://b/k.tar"), "{e}");

        let none = Unseal::Age {
            object: "s3://b/k.tar".into(),
            identities: None,
        };
        let e = none.open(std::io::Cursor::new(sealed)).err().unwrap();
        assert!(matches!(e, AgeError::NoIdentityConfigured { .. }), "{e}");
        assert!(e.to_string().contains("s3://b/k.tar"), "{e}");
    }

    #[test]
    fn a_plaintext_object_is_read_as_it_is_and_needs_no_identity_file() {
        let u = Unseal::for_object("s3://b/k", false, Some(Path::new("/nonexistent"))).unwrap();
        let mut out = Vec::new();
        u.open(&b"plain"[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"plain");
        let e = Unseal::for_object("s3://b/k", true, Some(Path::new("/nonexistent/ids")));
        assert!(matches!(e, Err(AgeError::ReadIdentities { .. })));
    }
}
