//! Checkpoints are secrets (issue 17), against real tools: the lab's docker-registry and s3s-fs,
//! keys from `openssl`, age files from the `age` CLI, and `skopeo copy --decryption-key` (the
//! ocicrypt implementation CRI-O and containerd share) as the decrypter — not our own reader.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use transition_operator::image::age_archive::{AgeError, Unseal};
use transition_operator::image::build::{
    CRIO_CHECKPOINT_NAME, ImageError, LayerEncryption, MEDIA_LAYER_TAR, build_and_push,
};
use transition_operator::image::ocicrypt::{
    self, ANNOTATION_KEYS_JWE, ANNOTATION_PUBOPTS, MEDIA_LAYER_TAR_ENCRYPTED,
};
use transition_testlab::{Lab, RegistryEndpoint};

use crate::images_support::{archive_store, registry, run, s3_client, sha256, spec};

/// A checkpoint archive (the entries validation requires) whose memory pages hold `marker`
/// many times over, ~300 KiB in all.
fn archive_with(marker: &str) -> Vec<u8> {
    let pages: String = (0..6000).map(|i| format!("{marker}:{i:06}\n")).collect();
    let entries = [
        ("config.dump", r#"{"name":"counter"}"#.to_owned()),
        ("spec.dump", r#"{"annotations":{}}"#.to_owned()),
        ("checkpoint/inventory.img", "inv".to_owned()),
        ("checkpoint/pages-1.img", pages),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// An RSA-2048 key pair made by openssl: `(private PEM path, public PEM path)`.
fn openssl_key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}-private.pem"));
    let public = dir.join(format!("{name}-public.pem"));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (private, public)
}

/// `skopeo copy [--decryption-key KEY] docker://REFERENCE dir:OUT`, as the kubelet shim restores.
fn skopeo_copy(ep: &RegistryEndpoint, reference: &str, out: &Path, key: Option<&Path>) -> Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false", "--src-creds"])
        .arg(format!("{}:{}", ep.user, ep.password));
    if let Some(key) = key {
        cmd.arg("--decryption-key").arg(key);
    }
    cmd.arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap()
}

fn skopeo_inspect_raw(ep: &RegistryEndpoint, reference: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{}:{}", ep.user, ep.password))
        .arg(format!("docker://{}/{reference}", ep.host)));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file skopeo wrote into `dir`, with its bytes.
fn copied_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_checkpoint_image_opens_in_skopeo_with_either_target_key_and_leaks_nothing_without_one()
 {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a_private, a_public) = openssl_key_pair(dir.path(), "a");
    let (b_private, b_public) = openssl_key_pair(dir.path(), "b");
    let (stranger, _) = openssl_key_pair(dir.path(), "stranger");
    // The operator's folder: one file per target cluster, public keys only.
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    std::fs::copy(&a_public, keys_dir.join("cluster2-aws.pem")).unwrap();
    std::fs::copy(&b_public, keys_dir.join("cluster3-gcp.pem")).unwrap();
    let recipients = ocicrypt::keys_for_clusters(
        &keys_dir,
        &["cluster2-aws".to_owned(), "cluster3-gcp".to_owned()],
    )
    .unwrap();
    assert_eq!(recipients.len(), 2);

    let marker = format!("TRANSITION-SECRET-MARKER-{}", std::process::id());
    let archive = archive_with(&marker);
    let repo = format!("checkpoints/crypto-{}/counter", std::process::id());
    let mut s = spec(&repo);
    s.known_digest = Some(sha256(&archive));
    s.encryption = Some(LayerEncryption { recipients });
    let reg = registry(&ep);
    let pushed = build_and_push(&reg, std::io::Cursor::new(archive.clone()), &s)
        .await
        .unwrap();
    assert_eq!(pushed.layer_media_type, MEDIA_LAYER_TAR_ENCRYPTED);
    assert_eq!(pushed.archive_digest, sha256(&archive));
    assert_ne!(
        pushed.layer_digest, pushed.archive_digest,
        "the blob is ciphertext"
    );
    assert_eq!(
        pushed.layer_size,
        archive.len() as u64,
        "CTR keeps the size"
    );
    assert!(!pushed.layer_reused);

    // What the registry holds: the ocicrypt descriptor, the runtimes' annotations unchanged, the
    // config's diff_ids the plaintext's.
    let manifest = skopeo_inspect_raw(&ep, &format!("{repo}@{}", pushed.manifest_digest));
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], MEDIA_LAYER_TAR_ENCRYPTED);
    assert_eq!(layer["digest"], pushed.layer_digest.as_str());
    assert!(layer["annotations"][ANNOTATION_KEYS_JWE].is_string());
    assert!(layer["annotations"][ANNOTATION_PUBOPTS].is_string());
    assert_eq!(manifest["annotations"][CRIO_CHECKPOINT_NAME], "counter");
    let index = skopeo_inspect_raw(&ep, &format!("{repo}:{}", pushed.tag));
    assert_eq!(index["annotations"][CRIO_CHECKPOINT_NAME], "counter");
    assert_eq!(
        index["manifests"][0]["annotations"][CRIO_CHECKPOINT_NAME],
        "counter"
    );

    // Either target's private key decrypts it: the layer is the archive, byte for byte.
    for (name, key) in [("a", &a_private), ("b", &b_private)] {
        let out = dir.path().join(format!("pulled-{name}"));
        let copied = skopeo_copy(&ep, &pushed.reference, &out, Some(key));
        assert!(
            copied.status.success(),
            "skopeo with key {name}: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        let layer = std::fs::read(out.join(pushed.archive_digest.trim_start_matches("sha256:")))
            .unwrap_or_else(|e| panic!("key {name}: no decrypted layer: {e}"));
        assert!(
            layer == archive,
            "key {name}: the decrypted layer is the archive"
        );
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_LAYER_TAR, "key {name}");
        assert_eq!(m["annotations"][CRIO_CHECKPOINT_NAME], "counter");
    }

    // A stranger's key does not.
    let out = dir.path().join("pulled-stranger");
    let copied = skopeo_copy(&ep, &pushed.reference, &out, Some(&stranger));
    let stderr = String::from_utf8_lossy(&copied.stderr);
    assert!(
        !copied.status.success() && stderr.contains("decrypt"),
        "a stranger's key must not decrypt the layer: {stderr}"
    );
    assert!(
        !out.join(pushed.archive_digest.trim_start_matches("sha256:"))
            .exists(),
        "no plaintext layer written"
    );

    // Without a key the blobs stay encrypted: the marker is in none of them.
    let out = dir.path().join("pulled-nokey");
    let copied = skopeo_copy(&ep, &pushed.reference, &out, None);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let files = copied_files(&out);
    assert!(
        files
            .iter()
            .any(|(name, _)| *name == pushed.layer_digest.trim_start_matches("sha256:")),
        "the encrypted layer was copied: {:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, bytes) in &files {
        assert!(
            !contains(bytes, marker.as_bytes()),
            "{name} holds plaintext of the archive"
        );
    }
    assert!(contains(&archive, marker.as_bytes()), "the marker is real");
}

/// An object as the agent uploads it when it encrypts: an age file with the PLAINTEXT's sha256.
async fn put_sealed_archive(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    plain: &[u8],
    sealed: Vec<u8>,
) {
    use transition_crds::storage::{
        ENCRYPTION_AGE, META_ENCRYPTION, META_PLAINTEXT_SIZE, META_SHA256,
    };
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .metadata(META_SHA256, sha256(plain).trim_start_matches("sha256:"))
        .metadata(META_ENCRYPTION, ENCRYPTION_AGE)
        .metadata(META_PLAINTEXT_SIZE, plain.len().to_string())
        .body(sealed.into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_encrypted_archive_in_s3_becomes_its_image_with_the_identity_and_fails_naming_the_object_without_it()
 {
    use transition_crds::storage::ArchiveKey;

    let lab = Lab::get().unwrap();
    let s3 = lab.s3().unwrap();
    let ep = lab.registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Identities as age-keygen writes them (with its comment lines); two = a rotation.
    let (old_ids, new_ids, wrong_ids) = (
        dir.path().join("old.txt"),
        dir.path().join("new.txt"),
        dir.path().join("wrong.txt"),
    );
    for f in [&old_ids, &new_ids, &wrong_ids] {
        run(Command::new("age-keygen").arg("-o").arg(f));
    }
    let recipient = {
        let out = run(Command::new("age-keygen").arg("-y").arg(&old_ids));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let rotation = dir.path().join("operator-identities.txt");
    std::fs::write(
        &rotation,
        format!(
            "{}{}",
            std::fs::read_to_string(&new_ids).unwrap(),
            std::fs::read_to_string(&old_ids).unwrap()
        ),
    )
    .unwrap();

    let marker = format!("TRANSITION-AGE-MARKER-{}", std::process::id());
    let plain = archive_with(&marker);
    let plain_path = dir.path().join("archive.tar");
    std::fs::write(&plain_path, &plain).unwrap();
    let sealed_path = dir.path().join("archive.tar.age");
    run(Command::new("age")
        .args(["-r", &recipient, "-o"])
        .arg(&sealed_path)
        .arg(&plain_path));
    let sealed = std::fs::read(&sealed_path).unwrap();
    assert!(!contains(&sealed, marker.as_bytes()));

    let client = s3_client(&s3);
    let key = ArchiveKey::new(
        "cluster1-azure",
        &format!("worker-age-{}", std::process::id()),
        "checkpoint-counter-7d9f5_default-counter-2026-12-01T10:00:00Z.tar",
    )
    .unwrap()
    .to_string();
    put_sealed_archive(&client, &s3.bucket, &key, &plain, sealed.clone()).await;
    let store = archive_store(&s3, Duration::from_secs(60));
    let object = store.ready(&key).await.unwrap();
    assert!(object.encrypted);
    assert_eq!(
        object.digest,
        sha256(&plain),
        "the recorded sha256 is the plaintext's"
    );
    assert_eq!(object.size, sealed.len() as u64);
    assert_eq!(object.plaintext_size, plain.len() as u64);
    assert_eq!(object.url, format!("s3://{}/{key}", s3.bucket));

    let reg = registry(&ep);
    let repo = format!("checkpoints/age-{}/counter", std::process::id());
    // The operator's path (checkpoint/run.rs): read the identities, stream-decrypt, check the
    // plaintext's digest against the recorded one.
    let build = |identity_file: Option<PathBuf>, encryption: Option<LayerEncryption>| {
        let (store, reg, object, repo) = (&store, &reg, &object, &repo);
        async move {
            let mut s = spec(repo);
            s.known_digest = Some(object.digest.clone());
            s.unseal = Unseal::for_object(&object.url, object.encrypted, identity_file.as_deref())?;
            s.encryption = encryption;
            build_and_push(reg, store.open(&object.key).await.unwrap(), &s).await
        }
    };
    let pushed = build(Some(rotation.clone()), None).await.unwrap();
    assert_eq!(pushed.layer_digest, sha256(&plain));
    assert_eq!(pushed.layer_size, plain.len() as u64);
    let out = dir.path().join("pulled");
    let copied = skopeo_copy(&ep, &pushed.reference, &out, None);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let layer = std::fs::read(out.join(pushed.layer_digest.trim_start_matches("sha256:"))).unwrap();
    assert!(
        layer == plain,
        "the layer is the plaintext archive, byte for byte"
    );

    // A wrong identity: an error naming the object, nothing of the key.
    let e = build(Some(wrong_ids.clone()), None).await.unwrap_err();
    assert!(
        matches!(e, ImageError::Decrypt(AgeError::NoMatchingIdentity { .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&object.url), "{msg}");
    let wrong_text = std::fs::read_to_string(&wrong_ids).unwrap();
    let wrong_secret = wrong_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET"))
        .unwrap();
    assert!(!msg.contains(&wrong_secret[16..]), "{msg}");

    // No identity configured: the typed error, naming the object.
    let e = build(None, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Decrypt(AgeError::NoIdentityConfigured { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&object.url), "{e}");

    // Both at once, as in production: sealed in S3, encrypted in the registry, and skopeo's
    // decryption gives back the plaintext archive.
    let (private, public) = openssl_key_pair(dir.path(), "target");
    let recipients = ocicrypt::read_key_file(&public).unwrap();
    let pushed = build(Some(rotation), Some(LayerEncryption { recipients }))
        .await
        .unwrap();
    assert_eq!(pushed.layer_media_type, MEDIA_LAYER_TAR_ENCRYPTED);
    let out = dir.path().join("pulled-decrypted");
    let copied = skopeo_copy(&ep, &pushed.reference, &out, Some(&private));
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let layer =
        std::fs::read(out.join(pushed.archive_digest.trim_start_matches("sha256:"))).unwrap();
    assert!(
        layer == plain,
        "sealed in S3 → encrypted layer → skopeo → the archive"
    );
}

/// What the kubelet shim's restore path (`hack/kubelet_shim/images.py`, `Images.pull_archive`:
/// skopeo with the node's `--decryption-keys-dir`) makes of `reference`: `Ok(layer bytes)` or
/// `Err((reason, message))` — the shim's own Python code against the real registry and skopeo.
fn shim_pull(
    ep: &RegistryEndpoint,
    reference: &str,
    work: &Path,
    keys_dir: Option<&Path>,
) -> Result<Vec<u8>, (String, String)> {
    const DRIVER: &str = r#"
import json, sys, types
hack, ref, user, pw_file, keys, state = sys.argv[1:7]
sys.path.insert(0, hack)
from kubelet_shim.images import Images, PullError
args = types.SimpleNamespace(insecure_registry=None, registry=None, registry_user=user,
    registry_password_file=pw_file, registry_auth_file=None, decryption_keys_dir=keys or None,
    signature_policy=None, registries_d=None)
try:
    d, layer = Images(args, None, state).pull_archive(ref, {"metadata": {"namespace": "ns"}, "spec": {}})
    print(json.dumps({"layer": layer}))
except PullError as e:
    print(json.dumps({"reason": e.reason, "message": str(e)}))
"#;
    std::fs::create_dir_all(work).unwrap();
    let pw_file = work.join("registry-password");
    std::fs::write(&pw_file, &ep.password).unwrap();
    let keys = keys_dir
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(transition_testlab::repo_root().join("hack"))
        .arg(reference)
        .arg(&ep.user)
        .arg(&pw_file)
        .arg(keys)
        .arg(work.join("state")));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the shim driver printed no JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match v["layer"].as_str() {
        Some(layer) => Ok(std::fs::read(layer).unwrap()),
        None => Err((
            v["reason"].as_str().unwrap_or_default().to_owned(),
            v["message"].as_str().unwrap_or_default().to_owned(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_shims_restore_path_decrypts_with_the_nodes_key_and_refuses_without_it() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node_private, node_public) = openssl_key_pair(dir.path(), "node");
    let (stranger, _) = openssl_key_pair(dir.path(), "stranger");
    let archive = archive_with(&format!("SHIM-MARKER-{}", std::process::id()));
    let repo = format!("checkpoints/shim-crypto-{}/counter", std::process::id());
    let mut s = spec(&repo);
    s.encryption = Some(LayerEncryption {
        recipients: ocicrypt::read_key_file(&node_public).unwrap(),
    });
    let pushed = build_and_push(&registry(&ep), std::io::Cursor::new(archive.clone()), &s)
        .await
        .unwrap();
    // The node's keys folder, as CRI-O's decryption_keys_path: every file is tried.
    let node_keys = dir.path().join("node-keys");
    std::fs::create_dir(&node_keys).unwrap();
    std::fs::copy(&stranger, node_keys.join("0-old.pem")).unwrap();
    std::fs::copy(&node_private, node_keys.join("1-current.pem")).unwrap();
    let layer = shim_pull(
        &ep,
        &pushed.reference,
        &dir.path().join("with-key"),
        Some(&node_keys),
    )
    .unwrap_or_else(|e| panic!("the node with its key must restore: {e:?}"));
    assert!(layer == archive, "the shim gets the archive, byte for byte");

    let (reason, message) = shim_pull(&ep, &pushed.reference, &dir.path().join("no-key"), None)
        .expect_err("a node without keys must refuse");
    assert_eq!(reason, "ErrImagePull");
    assert!(
        message.contains("is encrypted") && message.contains("no decryption keys"),
        "{message}"
    );

    let strangers = dir.path().join("stranger-keys");
    std::fs::create_dir(&strangers).unwrap();
    std::fs::copy(&stranger, strangers.join("k.pem")).unwrap();
    let (reason, message) = shim_pull(
        &ep,
        &pushed.reference,
        &dir.path().join("wrong"),
        Some(&strangers),
    )
    .expect_err("a node with another cluster's key must refuse");
    assert_eq!(reason, "ErrImagePull");
    assert!(
        message.contains("none of this node's 1 key(s)"),
        "{message}"
    );
}
