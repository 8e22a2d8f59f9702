//! Encrypted checkpoint layers in the ocicrypt format (containers/ocicrypt: what CRI-O decrypts
//! with its node keys, containerd with imgcrypt, and `skopeo copy --decryption-key`), on AWS-LC
//! (`aws-lc-rs`) only.
//!
//! The layer: `application/vnd.oci.image.layer.v1.tar+encrypted`, the plaintext archive encrypted
//! with `AES_256_CTR_HMAC_SHA256`: a fresh 32-byte key and 16-byte initial counter block ("nonce")
//! per layer, AES-256-CTR (the whole 16 bytes count up, big-endian, as Go's `cipher.NewCTR`), and an
//! HMAC-SHA256 keyed with the same key over the CIPHERTEXT (encrypt-then-MAC). Its descriptor
//! carries two annotations:
//!
//! * `org.opencontainers.image.enc.pubopts`: base64 of the JSON of ocicrypt's
//!   `PublicLayerBlockCipherOptions`: `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":<base64>,
//!   "cipheroptions":{}}`;
//! * `org.opencontainers.image.enc.keys.jwe`: base64 of a JWE (JSON serialization, general form,
//!   one recipient per RSA public key) whose plaintext is the JSON of
//!   `PrivateLayerBlockCipherOptions`: `{"symkey":<base64>,"digest":"sha256:<plaintext layer>",
//!   "cipheroptions":{"nonce":<base64>}}`. Content encryption `A256GCM` (protected header
//!   `{"enc":"A256GCM"}`, the ASCII of its base64url as AAD); key encryption `RSA-OAEP-256`
//!   (RSA-OAEP with SHA-256 and MGF1-SHA-256) in each recipient's header. ocicrypt itself writes
//!   `RSA-OAEP` (go-jose's name for OAEP with SHA-1) for RSA keys and accepts both when it reads;
//!   SHA-256 is the one chosen here (checked with skopeo 1.9.3 in the integration tests).
//!
//! (Go's `[]byte` JSON is standard base64 with padding; JWE members are base64url without it.)
//!
//! Encryption streams: [`LayerEncryptor::update`] turns each plaintext chunk into its ciphertext
//! and folds it into the HMAC, so memory stays one chunk whatever the layer size; the key is
//! wrapped for the recipients only at [`LayerEncryptor::finish`], once the HMAC is known.
//!
//! Keys: PEM files of RSA PUBLIC keys (`-----BEGIN PUBLIC KEY-----`, 2048–8192 bits), several per
//! file allowed. The operator never holds a private key of a target; one given by mistake is
//! refused. Errors name the file and the PEM block's number, never its content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::{aead, cipher, hmac, rand, rsa};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

/// Media type of our encrypted, uncompressed tar layer.
pub const MEDIA_LAYER_TAR_ENCRYPTED: &str = "application/vnd.oci.image.layer.v1.tar+encrypted";
/// The JWE-wrapped layer key (ocicrypt's `jwe` key wrapper).
pub const ANNOTATION_KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
/// The public cipher options.
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// ocicrypt's `blockcipher.AES256CTR`.
pub const CIPHER_AES256CTR: &str = "AES_256_CTR_HMAC_SHA256";
/// JWE key management algorithm written in each recipient's header.
pub const JWE_ALG: &str = "RSA-OAEP-256";
/// JWE content encryption.
pub const JWE_ENC: &str = "A256GCM";
/// Largest key file read.
pub const KEY_FILE_MAX_BYTES: u64 = 1 << 20;

const SYMKEY_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const AES_BLOCK_LEN: usize = 16;
const OAEP: &rsa::OaepAlgorithm = &rsa::OAEP_SHA256_MGF1SHA256;

/// Why a layer could not be encrypted (no key material in any message).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("failed to read the encryption key file {path}: {source}")]
    ReadKeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the encryption key file {path}: it is larger than {max} bytes")]
    KeyFileTooLarge { path: String, max: u64 },
    #[error("failed to list the encryption keys in {dir}: {source}")]
    ReadKeyDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to use the encryption key file {path}: PEM block {block} is a private key; only the target's PUBLIC key belongs here (`openssl pkey -pubout`), the operator never needs a private key"
    )]
    PrivateKey { path: String, block: usize },
    #[error(
        "failed to use the encryption key file {path}: PEM block {block} ({label}) is not an RSA public key of 2048 to 8192 bits (`-----BEGIN PUBLIC KEY-----`)"
    )]
    NotRsaPublicKey {
        path: String,
        block: usize,
        label: String,
    },
    #[error("failed to use the encryption key file {path}: {reason}")]
    BadPem { path: String, reason: String },
    #[error(
        "failed to encrypt for target cluster {cluster}: its public key file {path} does not exist"
    )]
    MissingClusterKey { cluster: String, path: String },
    #[error("failed to encrypt for target cluster {cluster:?}: not a valid file name")]
    BadClusterName { cluster: String },
    #[error("failed to encrypt the layer: no usable public key in {dir}")]
    NoKeys { dir: String },
    #[error("failed to encrypt the layer: no recipient key was given")]
    NoRecipients,
    #[error("failed to {op}: the crypto library refused")]
    Crypto { op: &'static str },
}

fn refused(op: &'static str) -> impl Fn(aws_lc_rs::error::Unspecified) -> CryptoError {
    move |_| CryptoError::Crypto { op }
}

/// An RSA public key the layer key is wrapped for. `source` (`dir/cluster.pem#2`) names it in
/// errors and logs; the key itself is never printed.
#[derive(Clone)]
pub struct RecipientKey {
    pub source: String,
    key: rsa::PublicEncryptingKey,
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientKey")
            .field("source", &self.source)
            .field("bits", &self.key.key_size_bits())
            .finish()
    }
}

/// A PEM block: its label (`PUBLIC KEY`) and base64 body lines.
struct PemBlock {
    label: String,
    body: String,
    has_headers: bool,
}

/// The PEM blocks of `text` (pure). Text outside blocks is ignored, as openssl does.
fn pem_blocks(path: &str, text: &str) -> Result<Vec<PemBlock>, CryptoError> {
    let bad = |reason: String| CryptoError::BadPem {
        path: path.to_owned(),
        reason,
    };
    let mut blocks = Vec::new();
    let mut open: Option<PemBlock> = None;
    for line in text.lines() {
        let line = line.trim();
        match open.as_mut() {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    open = Some(PemBlock {
                        label: label.to_owned(),
                        body: String::new(),
                        has_headers: false,
                    });
                }
            }
            Some(block) => {
                if let Some(label) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if label != block.label {
                        return Err(bad(format!(
                            "PEM block {} does not end where it began",
                            blocks.len() + 1
                        )));
                    }
                    if let Some(done) = open.take() {
                        blocks.push(done);
                    }
                } else if line.contains(':') {
                    // `Proc-Type: 4,ENCRYPTED` and the like: legacy encrypted private keys.
                    block.has_headers = true;
                } else {
                    block.body.push_str(line);
                }
            }
        }
    }
    if open.is_some() {
        return Err(bad(format!(
            "PEM block {} has no END line",
            blocks.len() + 1
        )));
    }
    if blocks.is_empty() {
        return Err(bad("it holds no PEM block".into()));
    }
    Ok(blocks)
}

/// A label safe to repeat in an error (PEM labels are short upper-case words).
fn shown_label(label: &str) -> String {
    if label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
    {
        label.to_owned()
    } else {
        "an unrecognised label".to_owned()
    }
}

/// The RSA public keys of a PEM text (pure): every block must be a `PUBLIC KEY` holding an RSA
/// key of 2048–8192 bits; a private key is refused.
pub fn parse_public_keys(path: &str, text: &str) -> Result<Vec<RecipientKey>, CryptoError> {
    let mut keys = Vec::new();
    for (i, block) in pem_blocks(path, text)?.into_iter().enumerate() {
        let n = i + 1;
        if block.label.contains("PRIVATE KEY") {
            return Err(CryptoError::PrivateKey {
                path: path.to_owned(),
                block: n,
            });
        }
        let not_rsa = || CryptoError::NotRsaPublicKey {
            path: path.to_owned(),
            block: n,
            label: shown_label(&block.label),
        };
        if block.label != "PUBLIC KEY" || block.has_headers {
            return Err(not_rsa());
        }
        let der = STANDARD
            .decode(block.body.as_bytes())
            .map_err(|_| CryptoError::BadPem {
                path: path.to_owned(),
                reason: format!("PEM block {n} is not valid base64"),
            })?;
        let key = rsa::PublicEncryptingKey::from_der(&der).map_err(|_| not_rsa())?;
        if !(2048..=8192).contains(&key.key_size_bits()) || !can_wrap(&key) {
            return Err(not_rsa());
        }
        keys.push(RecipientKey {
            source: format!("{path}#{n}"),
            key,
        });
    }
    Ok(keys)
}

/// Whether RSA-OAEP works with `key` (an EC key in a `PUBLIC KEY` block parses but cannot).
fn can_wrap(key: &rsa::PublicEncryptingKey) -> bool {
    let Ok(oaep) = rsa::OaepPublicEncryptingKey::new(key.clone()) else {
        return false;
    };
    let mut out = vec![0u8; oaep.key_size_bytes()];
    oaep.encrypt(OAEP, &[0u8; SYMKEY_LEN], &mut out, None)
        .is_ok()
}

/// Reads the public keys of one PEM file.
pub fn read_key_file(path: &Path) -> Result<Vec<RecipientKey>, CryptoError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let io = |source| CryptoError::ReadKeyFile {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(KEY_FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > KEY_FILE_MAX_BYTES {
        return Err(CryptoError::KeyFileTooLarge {
            path: shown,
            max: KEY_FILE_MAX_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| CryptoError::BadPem {
        path: shown.clone(),
        reason: "it is not text".into(),
    })?;
    parse_public_keys(&shown, &text)
}

/// The keys of `clusters` from `dir/<cluster>.pem` (one mounted Secret per target cluster); an
/// empty `clusters` means every `*.pem` of `dir`. A cluster without its file, or no key at all,
/// is an error: never a plaintext layer when encryption was asked for.
pub fn keys_for_clusters(
    dir: &Path,
    clusters: &[String],
) -> Result<Vec<RecipientKey>, CryptoError> {
    let mut keys = Vec::new();
    if clusters.is_empty() {
        for path in key_files(dir)? {
            keys.extend(read_key_file(&path)?);
        }
    }
    for cluster in clusters {
        if cluster.is_empty() || cluster.starts_with('.') || cluster.contains(['/', '\\', '\0']) {
            return Err(CryptoError::BadClusterName {
                cluster: cluster.clone(),
            });
        }
        let path = dir.join(format!("{cluster}.pem"));
        if !path.is_file() {
            return Err(CryptoError::MissingClusterKey {
                cluster: cluster.clone(),
                path: path.display().to_string(),
            });
        }
        keys.extend(read_key_file(&path)?);
    }
    if keys.is_empty() {
        return Err(CryptoError::NoKeys {
            dir: dir.display().to_string(),
        });
    }
    Ok(keys)
}

/// The `*.pem` files of `dir`, sorted (a Secret volume's `..data` entries are skipped).
fn key_files(dir: &Path) -> Result<Vec<PathBuf>, CryptoError> {
    let err = |source| CryptoError::ReadKeyDir {
        dir: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".pem") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Encrypts one layer as it streams by (AES-256-CTR, HMAC-SHA256 over the ciphertext), with a
/// fresh key and nonce.
pub struct LayerEncryptor {
    symkey: [u8; SYMKEY_LEN],
    nonce: [u8; NONCE_LEN],
    ctr: cipher::StreamingEncryptingKey,
    mac: hmac::Context,
}

impl LayerEncryptor {
    /// A fresh key and nonce from the system's CSPRNG.
    pub fn new() -> Result<LayerEncryptor, CryptoError> {
        let mut symkey = [0u8; SYMKEY_LEN];
        rand::fill(&mut symkey).map_err(refused("generate a layer key"))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(refused("generate a layer nonce"))?;
        let key = cipher::UnboundCipherKey::new(&cipher::AES_256, &symkey)
            .map_err(refused("set up AES-256-CTR"))?;
        // "less safe" only because the caller picks the counter block: it is fresh and random.
        let ctr = cipher::StreamingEncryptingKey::less_safe_ctr(
            key,
            cipher::EncryptionContext::Iv128(nonce.into()),
        )
        .map_err(refused("set up AES-256-CTR"))?;
        let mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &symkey));
        Ok(LayerEncryptor {
            symkey,
            nonce,
            ctr,
            mac,
        })
    }

    /// The ciphertext of the next plaintext bytes (same length), folded into the HMAC.
    pub fn update(&mut self, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; plain.len() + AES_BLOCK_LEN];
        let written = self
            .ctr
            .update(plain, &mut out)
            .map_err(refused("encrypt the layer"))?
            .written()
            .len();
        // CTR is a stream mode: every byte in gives a byte out at once.
        if written != plain.len() {
            return Err(CryptoError::Crypto {
                op: "encrypt the layer (the stream cipher held bytes back)",
            });
        }
        out.truncate(written);
        self.mac.update(&out);
        Ok(out)
    }

    /// Ends the layer: the annotations of its descriptor, the key wrapped for every recipient.
    /// `plaintext_digest` is the unencrypted layer's `sha256:…` (what a decrypter verifies).
    pub fn finish(
        self,
        plaintext_digest: &str,
        recipients: &[RecipientKey],
    ) -> Result<BTreeMap<String, String>, CryptoError> {
        if recipients.is_empty() {
            return Err(CryptoError::NoRecipients);
        }
        let mut tail = [0u8; AES_BLOCK_LEN];
        let (_, rest) = self
            .ctr
            .finish(&mut tail)
            .map_err(refused("finish the layer encryption"))?;
        if !rest.written().is_empty() {
            return Err(CryptoError::Crypto {
                op: "finish the layer encryption (the stream cipher held bytes back)",
            });
        }
        let hmac = self.mac.sign();
        let public = json!({
            "cipher": CIPHER_AES256CTR,
            "hmac": STANDARD.encode(hmac.as_ref()),
            "cipheroptions": {},
        });
        let private = json!({
            "symkey": STANDARD.encode(self.symkey),
            "digest": plaintext_digest,
            "cipheroptions": {"nonce": STANDARD.encode(self.nonce)},
        });
        let private = serde_json::to_vec(&private).map_err(|_| CryptoError::Crypto {
            op: "serialise the layer options",
        })?;
        let jwe = jwe_encrypt(&private, recipients)?;
        let public = serde_json::to_vec(&public).map_err(|_| CryptoError::Crypto {
            op: "serialise the layer options",
        })?;
        Ok(BTreeMap::from([
            (ANNOTATION_KEYS_JWE.to_owned(), STANDARD.encode(jwe)),
            (ANNOTATION_PUBOPTS.to_owned(), STANDARD.encode(public)),
        ]))
    }
}

/// A JWE in JSON serialization (general form) of `plaintext` for every recipient: a fresh A256GCM
/// content key, wrapped with RSA-OAEP-256 for each.
fn jwe_encrypt(plaintext: &[u8], recipients: &[RecipientKey]) -> Result<Vec<u8>, CryptoError> {
    let mut cek = [0u8; 32];
    rand::fill(&mut cek).map_err(refused("generate a JWE content key"))?;
    let mut iv = [0u8; aead::NONCE_LEN];
    rand::fill(&mut iv).map_err(refused("generate a JWE nonce"))?;
    let protected = URL_SAFE_NO_PAD.encode(format!(r#"{{"enc":"{JWE_ENC}"}}"#));
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &cek).map_err(refused("set up A256GCM"))?,
    );
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(protected.as_bytes()),
            &mut ciphertext,
        )
        .map_err(refused("encrypt the layer options (A256GCM)"))?;
    let mut wrapped = Vec::with_capacity(recipients.len());
    for r in recipients {
        let oaep =
            rsa::OaepPublicEncryptingKey::new(r.key.clone()).map_err(refused("set up RSA-OAEP"))?;
        let mut out = vec![0u8; oaep.key_size_bytes()];
        let encrypted_key = oaep
            .encrypt(OAEP, &cek, &mut out, None)
            .map_err(refused("wrap the layer key (RSA-OAEP-256)"))?;
        wrapped.push(json!({
            "header": {"alg": JWE_ALG},
            "encrypted_key": URL_SAFE_NO_PAD.encode(encrypted_key),
        }));
    }
    let jwe = json!({
        "protected": protected,
        "recipients": wrapped,
        "iv": URL_SAFE_NO_PAD.encode(iv),
        "ciphertext": URL_SAFE_NO_PAD.encode(&ciphertext),
        "tag": URL_SAFE_NO_PAD.encode(tag.as_ref()),
    });
    serde_json::to_vec(&jwe).map_err(|_| CryptoError::Crypto {
        op: "serialise the JWE",
    })
}

/// The test side: what a runtime does with its private key (ocicrypt's `DecryptLayer`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};

    pub fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A fresh RSA key pair: the private key and its public key as PEM.
    pub fn key_pair() -> (rsa::PrivateDecryptingKey, String) {
        let private = rsa::PrivateDecryptingKey::generate(rsa::KeySize::Rsa2048).unwrap();
        let public: PublicKeyX509Der = private.public_key().as_der().unwrap();
        (private, pem("PUBLIC KEY", public.as_ref()))
    }

    pub fn private_pem(private: &rsa::PrivateDecryptingKey) -> String {
        let der: Pkcs8V1Der = private.as_der().unwrap();
        pem("PRIVATE KEY", der.as_ref())
    }

    /// The private options (`PrivateLayerBlockCipherOptions` JSON) from the JWE annotation.
    pub fn unwrap_options(
        annotations: &BTreeMap<String, String>,
        private: &rsa::PrivateDecryptingKey,
    ) -> Option<serde_json::Value> {
        let jwe = STANDARD.decode(&annotations[ANNOTATION_KEYS_JWE]).unwrap();
        let jwe: serde_json::Value = serde_json::from_slice(&jwe).unwrap();
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
        let protected = jwe["protected"].as_str().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
        assert_eq!(header["enc"], JWE_ENC);
        let oaep = rsa::OaepPrivateDecryptingKey::new(private.clone()).unwrap();
        for r in jwe["recipients"].as_array().unwrap() {
            assert_eq!(r["header"]["alg"], JWE_ALG);
            let mut out = vec![0u8; oaep.key_size_bytes()];
            let Ok(cek) = oaep.decrypt(OAEP, &b64(&r["encrypted_key"]), &mut out, None) else {
                continue;
            };
            let key =
                aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, cek).unwrap());
            let iv: [u8; 12] = b64(&jwe["iv"]).try_into().unwrap();
            let mut sealed = b64(&jwe["ciphertext"]);
            sealed.extend(b64(&jwe["tag"]));
            let plain = key
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(iv),
                    aead::Aad::from(protected.as_bytes()),
                    &mut sealed,
                )
                .unwrap();
            return Some(serde_json::from_slice(plain).unwrap());
        }
        None
    }

    /// The plaintext layer, after checking the HMAC of `ciphertext` (ocicrypt's decrypt).
    pub fn decrypt_layer(
        annotations: &BTreeMap<String, String>,
        private: &rsa::PrivateDecryptingKey,
        ciphertext: &[u8],
    ) -> Result<(Vec<u8>, String), &'static str> {
        let opts = unwrap_options(annotations, private).ok_or("no recipient matches")?;
        let public: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&annotations[ANNOTATION_PUBOPTS]).unwrap())
                .unwrap();
        assert_eq!(public["cipher"], CIPHER_AES256CTR);
        let symkey = STANDARD.decode(opts["symkey"].as_str().unwrap()).unwrap();
        let nonce: [u8; 16] = STANDARD
            .decode(opts["cipheroptions"]["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let expected = STANDARD.decode(public["hmac"].as_str().unwrap()).unwrap();
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &symkey), ciphertext);
        if mac.as_ref() != expected.as_slice() {
            return Err("HMAC mismatch");
        }
        let key = cipher::UnboundCipherKey::new(&cipher::AES_256, &symkey).unwrap();
        let mut ctr = cipher::StreamingDecryptingKey::ctr(
            key,
            cipher::DecryptionContext::Iv128(nonce.into()),
        )
        .unwrap();
        let mut out = vec![0u8; ciphertext.len() + 16];
        let n = ctr.update(ciphertext, &mut out).unwrap().written().len();
        out.truncate(n);
        Ok((out, opts["digest"].as_str().unwrap().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn encrypt(
        plain: &[u8],
        chunk: usize,
        keys: &[RecipientKey],
    ) -> (Vec<u8>, BTreeMap<String, String>) {
        let mut e = LayerEncryptor::new().unwrap();
        let mut out = Vec::new();
        for c in plain.chunks(chunk) {
            out.extend(e.update(c).unwrap());
        }
        (out, e.finish("sha256:abc", keys).unwrap())
    }

    #[test]
    fn a_layer_decrypts_with_every_recipients_private_key_and_not_with_a_strangers() {
        let (a, a_pub) = key_pair();
        let (b, b_pub) = key_pair();
        let (stranger, _) = key_pair();
        let mut keys = parse_public_keys("a.pem", &a_pub).unwrap();
        keys.extend(parse_public_keys("b.pem", &b_pub).unwrap());
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (ct, ann) = encrypt(&plain, 4099, &keys);
        assert_eq!(ct.len(), plain.len(), "CTR keeps the length");
        assert_ne!(ct, plain);
        for k in [&a, &b] {
            let (pt, digest) = decrypt_layer(&ann, k, &ct).unwrap();
            assert_eq!(pt, plain);
            assert_eq!(digest, "sha256:abc");
        }
        assert_eq!(
            decrypt_layer(&ann, &stranger, &ct),
            Err("no recipient matches")
        );
    }

    /// Encrypt-then-MAC: one flipped ciphertext bit is caught before any plaintext is used.
    #[test]
    fn the_hmac_covers_the_ciphertext() {
        let (a, a_pub) = key_pair();
        let keys = parse_public_keys("a.pem", &a_pub).unwrap();
        let (mut ct, ann) = encrypt(b"some layer bytes", 5, &keys);
        ct[3] ^= 1;
        assert_eq!(decrypt_layer(&ann, &a, &ct), Err("HMAC mismatch"));
    }

    #[test]
    fn every_layer_gets_a_fresh_key_and_nonce() {
        let (a, a_pub) = key_pair();
        let keys = parse_public_keys("a.pem", &a_pub).unwrap();
        let (ct1, ann1) = encrypt(b"same plaintext", 64, &keys);
        let (ct2, ann2) = encrypt(b"same plaintext", 64, &keys);
        assert_ne!(ct1, ct2);
        let (o1, o2) = (
            unwrap_options(&ann1, &a).unwrap(),
            unwrap_options(&ann2, &a).unwrap(),
        );
        assert_ne!(o1["symkey"], o2["symkey"]);
        assert_ne!(o1["cipheroptions"]["nonce"], o2["cipheroptions"]["nonce"]);
        assert_eq!(
            STANDARD
                .decode(o1["symkey"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn the_public_options_name_the_cipher_and_hold_no_key() {
        let (_, a_pub) = key_pair();
        let keys = parse_public_keys("a.pem", &a_pub).unwrap();
        let (_, ann) = encrypt(b"x", 1, &keys);
        let public: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&ann[ANNOTATION_PUBOPTS]).unwrap()).unwrap();
        let mut fields: Vec<&String> = public.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["cipher", "cipheroptions", "hmac"]);
        assert_eq!(public["cipheroptions"], json!({}));
        assert_eq!(
            STANDARD
                .decode(public["hmac"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    /// A private key in the keys folder is a mistake worth stopping for, and the message must
    /// not carry any of it.
    #[test]
    fn a_private_key_is_refused_without_echoing_it() {
        let (a, _) = key_pair();
        let text = private_pem(&a);
        let e = parse_public_keys("/keys/c.pem", &text).unwrap_err();
        assert!(matches!(e, CryptoError::PrivateKey { block: 1, .. }), "{e}");
        let msg = format!("{e} {e:?}");
        let body_line = text.lines().nth(1).unwrap();
        assert!(!msg.contains(body_line), "{msg}");
        assert!(msg.contains("/keys/c.pem"), "{msg}");
        let rsa_legacy = text.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        assert!(matches!(
            parse_public_keys("k", &rsa_legacy),
            Err(CryptoError::PrivateKey { .. })
        ));
    }

    #[test]
    fn garbage_pem_is_refused_without_echoing_it() {
        for (text, what) in [
            ("just SECRETWORD text\n", "no PEM block"),
            (
                "-----BEGIN PUBLIC KEY-----\nSECRETWORD!!\n-----END PUBLIC KEY-----\n",
                "base64",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nU0VDUkVUV09SRA==\n-----END PUBLIC KEY-----\n",
                "RSA public key",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nU0VDUkVUV09SRA==\n",
                "no END line",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nU0VDUkVUV09SRA==\n-----END CERTIFICATE-----\n",
                "(CERTIFICATE)",
            ),
        ] {
            let msg = parse_public_keys("k.pem", text).unwrap_err().to_string();
            assert!(msg.contains(what), "{what}: {msg}");
            assert!(
                !msg.contains("SECRETWORD") && !msg.contains("U0VDUkVU"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_file_may_hold_several_keys_and_each_is_named_by_its_block() {
        let (_, a_pub) = key_pair();
        let (_, b_pub) = key_pair();
        let keys =
            parse_public_keys("n.pem", &format!("# node a\n{a_pub}# node b\n{b_pub}")).unwrap();
        let names: Vec<&str> = keys.iter().map(|k| k.source.as_str()).collect();
        assert_eq!(names, ["n.pem#1", "n.pem#2"]);
        assert!(!format!("{keys:?}").contains("MII"), "Debug shows no key");
    }

    #[test]
    fn every_target_needs_its_key_file_and_an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a_pub) = key_pair();
        std::fs::write(dir.path().join("cluster2-aws.pem"), &a_pub).unwrap();
        let keys = keys_for_clusters(dir.path(), &["cluster2-aws".into()]).unwrap();
        assert_eq!(keys.len(), 1);
        let e =
            keys_for_clusters(dir.path(), &["cluster2-aws".into(), "cluster3".into()]).unwrap_err();
        assert!(
            matches!(&e, CryptoError::MissingClusterKey { cluster, .. } if cluster == "cluster3"),
            "{e}"
        );
        assert!(matches!(
            keys_for_clusters(dir.path(), &["../etc".into()]),
            Err(CryptoError::BadClusterName { .. })
        ));
        assert_eq!(
            keys_for_clusters(dir.path(), &[]).unwrap().len(),
            1,
            "all keys"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            keys_for_clusters(empty.path(), &[]),
            Err(CryptoError::NoKeys { .. })
        ));
    }

    #[test]
    fn finishing_without_recipients_is_refused() {
        let e = LayerEncryptor::new().unwrap();
        assert!(matches!(
            e.finish("sha256:x", &[]),
            Err(CryptoError::NoRecipients)
        ));
    }
}
