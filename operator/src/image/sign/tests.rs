use std::io::Read;

use pgp::composed::{KeyType, Message, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::types::Password;

use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const REFERENCE: &str =
    "registry.example:5000/checkpoints/default/counter-counter:ckpt-20261208T010000Z";

/// A fresh Ed25519 signing key (what `gpg --quick-gen-key … ed25519 sign` makes).
fn generated_key() -> SignedSecretKey {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("transition-operator <ops@example.com>".into());
    params
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap()
}

fn armored(key: &SignedSecretKey) -> String {
    key.to_armored_string(Default::default()).unwrap()
}

/// The base64 lines of an armored block: the key material an error must never show.
fn material_lines(armor: &str) -> Vec<&str> {
    armor
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        .collect()
}

#[test]
fn the_payload_has_exactly_the_fields_containers_image_requires() {
    let bytes = payload(
        REFERENCE,
        DIGEST,
        "transition-operator 0.1.0",
        1_700_000_000,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v,
        json!({
            "critical": {
                "identity": {"docker-reference": REFERENCE},
                "image": {"docker-manifest-digest": DIGEST},
                "type": "atomic container signature",
            },
            "optional": {"creator": "transition-operator 0.1.0", "timestamp": 1_700_000_000},
        })
    );
    assert!(
        v["optional"]["timestamp"].is_i64(),
        "an integer, never a float"
    );
}

#[test]
fn a_payload_for_anything_but_a_sha256_digest_is_refused() {
    for bad in [
        "",
        "sha256:",
        "sha512:0123",
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        "sha256:../../../etc/passwd0123456789abcdef0123456789abcdef0123456789",
    ] {
        assert!(
            matches!(
                payload(REFERENCE, bad, "c", 1),
                Err(SignError::BadDigest { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_signature_verifies_with_the_public_key_and_carries_the_payload() {
    let secret = generated_key();
    let key = SigningKey::from_armored("/keys/sign.asc", &armored(&secret)).unwrap();
    assert_eq!(key.fingerprint(), format!("{:X}", secret.fingerprint()));
    assert_eq!(key.fingerprint().len(), 40);
    let blob = key.sign_manifest(REFERENCE, DIGEST, 1_700_000_000).unwrap();
    // containers/image's signature.FromBlob recognises simple signatures by their first packet:
    // compressed data, one-pass signature or signature (old or new packet format).
    assert!(
        [
            0xA0, 0xA1, 0xA2, 0xA3, 0xC8, 0x90, 0x91, 0x92, 0xC4, 0x88, 0x89, 0x8A, 0x8B, 0xC2
        ]
        .contains(&blob[0]),
        "first byte {:#x}",
        blob[0]
    );
    let mut message = Message::from_bytes(&blob[..]).unwrap();
    let mut data = Vec::new();
    message.read_to_end(&mut data).unwrap();
    message.verify(&secret.to_public_key()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(v["critical"]["image"]["docker-manifest-digest"], DIGEST);
    assert_eq!(v["critical"]["identity"]["docker-reference"], REFERENCE);
}

#[test]
fn a_signature_does_not_verify_with_another_key() {
    let secret = generated_key();
    let key = SigningKey::from_armored("k", &armored(&secret)).unwrap();
    let blob = key.sign_manifest(REFERENCE, DIGEST, 1).unwrap();
    let mut message = Message::from_bytes(&blob[..]).unwrap();
    let mut data = Vec::new();
    message.read_to_end(&mut data).unwrap();
    assert!(message.verify(&generated_key().to_public_key()).is_err());
}

#[test]
fn a_public_key_given_instead_of_the_secret_key_is_named_as_such_without_its_content() {
    let public = generated_key()
        .to_public_key()
        .to_armored_string(Default::default())
        .unwrap();
    let err = SigningKey::from_armored("/keys/sign.asc", &public).unwrap_err();
    assert_eq!(
        err,
        KeyError::PublicKey {
            path: "/keys/sign.asc".into()
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("/keys/sign.asc") && text.contains("PUBLIC"),
        "{text}"
    );
    for line in material_lines(&public) {
        assert!(!text.contains(line));
    }
}

/// Which refusal a case expects.
type Expected = fn(&KeyError) -> bool;

#[test]
fn unusable_key_files_are_refused_naming_the_file_and_never_the_key_material() {
    let good = armored(&generated_key());
    // The body corrupted in the middle: still armored, no longer a key.
    let mut corrupt: Vec<String> = good.lines().map(str::to_owned).collect();
    let middle = corrupt.len() / 2;
    corrupt[middle] = corrupt[middle].chars().rev().collect();
    let corrupt = corrupt.join("\n");
    let mut protected = generated_key();
    protected
        .primary_key
        .set_password(rand::thread_rng(), &Password::from("s3cret"))
        .unwrap();
    let protected = armored(&protected);
    let cases: [(&str, &str, Expected); 5] = [
        ("", "empty", |e| {
            matches!(e, KeyError::NotArmoredSecretKey { .. })
        }),
        (&good[40..], "no armor header", |e| {
            matches!(e, KeyError::NotArmoredSecretKey { .. })
        }),
        (&corrupt, "corrupt body", |e| {
            matches!(e, KeyError::Malformed { .. })
        }),
        (&protected, "passphrase", |e| {
            matches!(e, KeyError::Passphrase { .. })
        }),
        (
            "-----BEGIN PGP MESSAGE-----\nabc\n-----END PGP MESSAGE-----\n",
            "a message",
            |e| matches!(e, KeyError::NotArmoredSecretKey { .. }),
        ),
    ];
    for (text, what, expected) in cases {
        let err = SigningKey::from_armored("/keys/sign.asc", text).unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("/keys/sign.asc"), "{what}: {shown}");
        for line in material_lines(text) {
            assert!(!shown.contains(line), "{what}: shows key material");
        }
    }
}

/// containers/image accepts only primary-key signatures: a key whose primary may only certify
/// (its signing key a subkey) is refused, not used to make signatures nodes would refuse.
#[test]
fn a_key_whose_primary_may_not_sign_is_refused() {
    use pgp::composed::SubkeyParamsBuilder;
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(false)
        .primary_user_id("certify only <ops@example.com>".into())
        .subkeys(vec![
            SubkeyParamsBuilder::default()
                .key_type(KeyType::Ed25519Legacy)
                .can_sign(true)
                .build()
                .unwrap(),
        ]);
    let key = params
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap();
    let err = SigningKey::from_armored("/keys/sign.asc", &armored(&key)).unwrap_err();
    assert_eq!(
        err,
        KeyError::NoSigningKey {
            path: "/keys/sign.asc".into()
        }
    );
}

#[test]
fn the_debug_form_of_a_key_shows_only_its_fingerprint() {
    let armor = armored(&generated_key());
    let key = SigningKey::from_armored("k", &armor).unwrap();
    let shown = format!("{key:?}");
    assert_eq!(shown, format!("SigningKey({})", key.fingerprint()));
}

#[tokio::test]
async fn a_key_file_is_read_and_a_missing_or_oversized_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sign.asc");
    let missing = SigningKey::read(&path).await.unwrap_err();
    assert!(matches!(missing, KeyError::Read { .. }), "{missing:?}");
    assert!(missing.to_string().contains("sign.asc"));
    std::fs::write(&path, armored(&generated_key())).unwrap();
    assert!(SigningKey::read(&path).await.is_ok());
    std::fs::write(
        &path,
        vec![b'A'; usize::try_from(MAX_KEY_FILE_BYTES).unwrap() + 1],
    )
    .unwrap();
    let big = SigningKey::read(&path).await.unwrap_err();
    assert!(big.to_string().contains("more than"), "{big}");
}
