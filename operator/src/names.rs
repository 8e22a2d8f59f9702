//! Kubernetes object names and label values derived from user-given strings.

use sha2::{Digest, Sha256};

/// `raw` lowercased, other characters than `[a-z0-9.-]` turned into `-`, cut to `max`, trimmed to
/// start and end alphanumeric (valid as an object name or label value for `max` 253 / 63).
pub fn dns_name(raw: &str, max: usize) -> String {
    let mut name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(max);
    name.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Like [`dns_name`], but when `raw` had to be changed or cut, a short hash of `raw` is appended
/// so that distinct inputs keep distinct names.
pub fn unique_name(raw: &str, max: usize) -> String {
    let plain = dns_name(raw, max);
    if plain == raw {
        return plain;
    }
    let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..4]);
    let head = dns_name(raw, max.saturating_sub(hash.len() + 1));
    format!("{head}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept_and_long_ones_get_a_distinguishing_hash() {
        assert_eq!(
            unique_name("checkpoint-p-pod-counter", 253),
            "checkpoint-p-pod-counter"
        );
        let a = unique_name(&"a".repeat(70), 63);
        let b = unique_name(&format!("{}b", "a".repeat(69)), 63);
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(dns_name("Worker_1", 63), "worker-1");
        assert_ne!(
            unique_name("Worker_1", 63),
            "worker-1",
            "changed input: hashed"
        );
    }
}
