//! Encrypts an archive to age X25519 recipients while hashing its plaintext, chunk by chunk, and
//! cuts the ciphertext into parts as it is produced (one read pass, memory bounded by one part
//! plus one chunk whatever the archive's size).
//!
//! The object written is a plain age file (age-encryption.org/v1, binary, no armor): `age -d -i
//! identity` decrypts it. Its size is known before the first byte is encrypted
//! ([`Sealer::sealed_size`]), so an upload can choose one PUT or multipart, and set the object's
//! metadata, up front; [`Sealer::finish`] checks the prediction.

use std::io::Write;
use std::sync::{Arc, Mutex};

use age::stream::StreamWriter;
use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::recipients::Recipient;

/// Plaintext bytes per age STREAM chunk (age-encryption.org/v1).
const AGE_CHUNK: u64 = 64 << 10;
/// Poly1305 tag after every chunk.
const AGE_TAG: u64 = 16;

/// Why an archive could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("failed to set up age encryption: {source}")]
    Start {
        #[source]
        source: Box<age::EncryptError>,
    },
    #[error("failed to encrypt: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encrypt: {actual} bytes of ciphertext where {predicted} were predicted")]
    Size { predicted: u64, actual: u64 },
}

/// Where the age writer puts ciphertext; the [`Sealer`] takes it out in parts.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<BytesMut>>);

impl Sink {
    fn with<T>(&self, f: impl FnOnce(&mut BytesMut) -> T) -> std::io::Result<T> {
        let mut buf = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("ciphertext buffer lock poisoned"))?;
        Ok(f(&mut buf))
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.with(|buf| buf.extend_from_slice(data))?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The result of sealing a whole archive.
#[derive(Debug)]
pub struct Sealed {
    /// Hex sha256 of the PLAINTEXT.
    pub sha256: String,
    /// Plaintext bytes sealed.
    pub plaintext: u64,
    /// Ciphertext bytes produced, the parts already taken included.
    pub ciphertext: u64,
    /// The ciphertext not yet taken as parts (the whole file for a one-PUT upload).
    pub rest: Bytes,
}

/// One archive being encrypted (and its plaintext hashed). Moved into blocking tasks for the
/// CPU work; holds no file and no network handle.
pub struct Sealer {
    writer: StreamWriter<Sink>,
    out: Sink,
    hasher: Sha256,
    plaintext: u64,
    header: u64,
    taken: u64,
}

impl Sealer {
    /// Starts an age file to `recipients` (a fresh file key each time).
    pub fn new(recipients: &[Recipient]) -> Result<Sealer, SealError> {
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| SealError::Start {
                    source: Box::new(e),
                })?;
        let out = Sink::default();
        let writer = encryptor
            .wrap_output(out.clone())
            .map_err(|source| SealError::Write { source })?;
        let header = out
            .with(|b| b.len() as u64)
            .map_err(|source| SealError::Write { source })?;
        Ok(Sealer {
            writer,
            out,
            hasher: Sha256::new(),
            plaintext: 0,
            header,
            taken: 0,
        })
    }

    /// The exact size of the age file holding `plaintext` bytes: header and nonce, then every
    /// 64 KiB chunk plus its 16-byte tag (an empty archive still has one, empty, final chunk).
    pub fn sealed_size(&self, plaintext: u64) -> u64 {
        self.header + plaintext + AGE_TAG * plaintext.div_ceil(AGE_CHUNK).max(1)
    }

    /// Hashes and encrypts the next plaintext bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SealError> {
        self.hasher.update(chunk);
        self.writer
            .write_all(chunk)
            .map_err(|source| SealError::Write { source })?;
        self.plaintext += chunk.len() as u64;
        Ok(())
    }

    /// Every complete `part_size` piece of ciphertext produced so far, in order.
    pub fn take_parts(&mut self, part_size: usize) -> Result<Vec<Bytes>, SealError> {
        let parts = self
            .out
            .with(|buf| split_parts(buf, part_size))
            .map_err(|source| SealError::Write { source })?;
        self.taken += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(parts)
    }

    /// Writes the final chunk. `rest` is what [`Sealer::take_parts`] has not taken.
    pub fn finish(self) -> Result<Sealed, SealError> {
        let Sealer {
            writer,
            out,
            hasher,
            plaintext,
            taken,
            ..
        } = self;
        writer
            .finish()
            .map_err(|source| SealError::Write { source })?;
        let rest = out
            .with(|buf| buf.split().freeze())
            .map_err(|source| SealError::Write { source })?;
        Ok(Sealed {
            sha256: hex::encode(hasher.finalize()),
            plaintext,
            ciphertext: taken + rest.len() as u64,
            rest,
        })
    }
}

/// Copies whole `part_size` pieces off the front of `buf`. Copied, not split: a split part would
/// keep the whole (grown) buffer allocated while it is in flight; a copy holds only its own bytes,
/// and `buf` reuses its space.
fn split_parts(buf: &mut BytesMut, part_size: usize) -> Vec<Bytes> {
    let mut parts = Vec::new();
    while part_size > 0 && buf.len() >= part_size {
        parts.push(Bytes::copy_from_slice(&buf[..part_size]));
        buf.advance(part_size);
    }
    parts
}

/// `Ok` when the sealed file has the size predicted before it was written.
pub fn check_size(predicted: u64, sealed: &Sealed) -> Result<(), SealError> {
    if sealed.ciphertext == predicted {
        Ok(())
    } else {
        Err(SealError::Size {
            predicted,
            actual: sealed.ciphertext,
        })
    }
}

#[cfg(test)]
#[expect(
    deprecated,
    reason = "the tests generate classic X25519 identities, as age-keygen 1.1 does"
)]
mod tests {
    use super::*;
    use std::io::Read;

    fn seal(plaintext: &[u8], recipients: &[Recipient], part: usize) -> (Vec<Bytes>, Sealed, u64) {
        let mut sealer = Sealer::new(recipients).unwrap();
        let predicted = sealer.sealed_size(plaintext.len() as u64);
        let mut parts = Vec::new();
        for chunk in plaintext.chunks(100_003) {
            sealer.push(chunk).unwrap();
            parts.extend(sealer.take_parts(part).unwrap());
        }
        (parts, sealer.finish().unwrap(), predicted)
    }

    fn decrypt(ciphertext: &[u8], identity: &age::x25519::Identity) -> Vec<u8> {
        let decryptor = age::Decryptor::new(ciphertext).unwrap();
        let mut reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    }

    /// The size predicted up front is the size produced, at every chunk boundary case.
    #[test]
    fn the_predicted_size_is_the_produced_size() {
        let r = age::x25519::Identity::generate().to_public();
        let c = AGE_CHUNK as usize;
        for len in [0, 1, c - 1, c, c + 1, 2 * c, 3 * c + 17, 1_000_000] {
            let data = vec![7u8; len];
            let (parts, sealed, predicted) = seal(&data, std::slice::from_ref(&r), 1 << 20);
            assert_eq!(sealed.ciphertext, predicted, "plaintext {len}");
            let total: usize = parts.iter().map(Bytes::len).sum::<usize>() + sealed.rest.len();
            assert_eq!(total as u64, predicted);
            check_size(predicted, &sealed).unwrap();
        }
    }

    /// Parts are cut at exactly the part size; concatenated they are one age file any of the
    /// recipients' identities decrypts, and the digest is the plaintext's.
    #[test]
    fn parts_concatenate_to_an_age_file_every_recipient_decrypts() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (parts, sealed, _) = seal(&data, &[a.to_public(), b.to_public()], 1 << 20);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() == 1 << 20));
        let mut file: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        file.extend_from_slice(&sealed.rest);
        assert_eq!(decrypt(&file, &a), data);
        assert_eq!(decrypt(&file, &b), data);
        assert_eq!(sealed.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(sealed.plaintext, data.len() as u64);
    }

    #[test]
    fn each_seal_uses_a_fresh_file_key() {
        let r = age::x25519::Identity::generate().to_public();
        let (_, one, _) = seal(b"same archive", std::slice::from_ref(&r), 1 << 20);
        let (_, two, _) = seal(b"same archive", std::slice::from_ref(&r), 1 << 20);
        assert_ne!(one.rest, two.rest);
        assert_eq!(one.sha256, two.sha256);
    }
}
