//! Checkpoint images against the lab's REAL docker-registry (htpasswd auth) with REAL CRIU
//! archives: build + push, `skopeo inspect` shows the annotations, `skopeo copy` pulls it back,
//! and `runc restore` (hack/restore-checkpoint.sh, the CRI runtime stand-in) continues the counter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use transition_operator::image::build::{
    CRIO_CHECKPOINT_NAME, CRIU_CONTAINER_NAME, CRIU_POD_NAME, CRIU_ROOTFS_IMAGE_NAME, ImageError,
    ImageSpec, build_and_push,
};
use transition_operator::image::registry::{Credentials, Registry, RegistryConfig, RegistryError};
use transition_testlab::{Lab, RegistryEndpoint, checkpoint_fixture};

use crate::images_support::{self, archive_store, registry, registry_as, s3_client};

/// An image of `repo` with the moving tag `latest`.
fn spec(repo: &str) -> ImageSpec {
    ImageSpec {
        moving_tag: Some("latest".into()),
        ..images_support::spec(repo)
    }
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `skopeo inspect --raw` of `reference` (`repo:tag` or `repo@digest`) in the lab registry.
fn inspect_raw(ep: &RegistryEndpoint, reference: &str) -> serde_json::Value {
    let url = format!("docker://{}/{reference}", ep.host);
    serde_json::from_slice(&skopeo(ep, &["inspect", "--raw", &url])).unwrap()
}

fn skopeo(ep: &RegistryEndpoint, args: &[&str]) -> Vec<u8> {
    let creds = format!("{}:{}", ep.user, ep.password);
    let mut cmd = Command::new("skopeo");
    cmd.arg(args[0]);
    if args[0] == "copy" {
        cmd.args(["--src-tls-verify=false", "--src-creds", &creds]);
    } else {
        cmd.args(["--tls-verify=false", "--creds", &creds]);
    }
    let out = cmd.args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_image_pulled_back_restores_and_the_counter_continues() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let archive = checkpoint_fixture("small", 0).unwrap();
    let repo = format!("checkpoints/it-{}/counter", std::process::id());
    let reg = registry(&ep);
    let pushed = build_and_push(&reg, std::fs::File::open(&archive).unwrap(), &spec(&repo))
        .await
        .unwrap();

    assert_eq!(
        pushed.layer_digest,
        sha256_file(&archive),
        "the layer is the archive, byte for byte"
    );
    assert!(
        pushed
            .reference
            .starts_with(&format!("{}/{repo}@sha256:", ep.host)),
        "{}",
        pushed.reference
    );

    // skopeo shows the annotations on the manifest and on the index.
    let manifest = inspect_raw(&ep, &format!("{repo}@{}", pushed.manifest_digest));
    let a = &manifest["annotations"];
    assert_eq!(a[CRIO_CHECKPOINT_NAME], "counter");
    assert_eq!(a[CRIU_CONTAINER_NAME], "counter");
    assert_eq!(a[CRIU_ROOTFS_IMAGE_NAME], "docker.io/library/busybox:1.36");
    assert_eq!(a[CRIU_POD_NAME], "counter-7d9f5");
    let index = inspect_raw(&ep, &format!("{repo}:{}", pushed.tag));
    assert_eq!(
        index["manifests"][0]["annotations"][CRIU_CONTAINER_NAME], "counter",
        "top-level descriptor carries it too"
    );
    assert_eq!(index["manifests"][0]["digest"], pushed.manifest_digest);

    // Pull back by digest, extract the layer, restore with runc + CRIU.
    let dir = tempfile::tempdir().unwrap();
    let pulled = dir.path().join("pulled");
    skopeo(
        &ep,
        &[
            "copy",
            &format!("docker://{}", pushed.reference),
            &format!("dir:{}", pulled.display()),
        ],
    );
    let layer = pulled.join(pushed.layer_digest.trim_start_matches("sha256:"));
    let extracted = dir.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    tar::Archive::new(std::fs::File::open(&layer).unwrap())
        .unpack(&extracted)
        .unwrap();
    let script = transition_testlab::repo_root().join("hack/restore-checkpoint.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&extracted)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "restore failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("restored counter:"))
        .unwrap();
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (at_checkpoint, after) = (nums[0], nums[1]);
    assert!(
        at_checkpoint >= 20,
        "the container counted before the checkpoint ({line})"
    );
    assert!(
        after > at_checkpoint,
        "the restored counter continued from its in-memory value ({line})"
    );
}

/// A tar with the required entries plus `extra` (path, kind 'f' file / 'l' symlink, data).
fn crafted(extra: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entries = vec![
        ("config.dump", 'f', r#"{"name":"counter"}"#),
        ("spec.dump", 'f', r#"{"annotations":{}}"#),
        ("checkpoint/inventory.img", 'f', "inv"),
    ];
    entries.extend_from_slice(extra);
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if kind == 'l' {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_link_name(data).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[tokio::test]
async fn malicious_archives_are_refused_naming_the_entry_and_leave_no_tag() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let reg = registry(&ep);
    let repo = format!("checkpoints/bad-{}/x", std::process::id());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            crafted(&[("../../etc/cron.d/evil", 'f', "boom")]),
            "../../etc/cron.d/evil",
        ),
        (
            crafted(&[("checkpoint/escape", 'l', "../../../../etc/shadow")]),
            "checkpoint/escape",
        ),
        (crafted(&[("/etc/passwd", 'f', "root::0:0")]), "/etc/passwd"),
    ];
    for (bytes, entry) in cases {
        let s = spec(&repo);
        let err = build_and_push(&reg, std::io::Cursor::new(bytes), &s)
            .await
            .unwrap_err();
        assert!(matches!(err, ImageError::Archive(_)), "{err}");
        assert!(err.to_string().contains(entry), "{err} should name {entry}");
        assert!(
            matches!(
                reg.get_manifest(&repo, &s.tag).await,
                Err(RegistryError::Status { status: 404, .. })
            ),
            "no tag"
        );
    }
    let missing = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("config.dump").unwrap();
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"{}"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let err = build_and_push(&reg, std::io::Cursor::new(missing), &spec(&repo))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("spec.dump") && err.to_string().contains("missing"),
        "{err}"
    );
}

#[tokio::test]
async fn a_layer_the_registry_has_is_not_sent_again_and_a_wrong_digest_is_caught() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let reg = registry(&ep);
    let archive = checkpoint_fixture("small", 0).unwrap();
    let repo = format!("checkpoints/reuse-{}/counter", std::process::id());
    let first = build_and_push(&reg, std::fs::File::open(&archive).unwrap(), &spec(&repo))
        .await
        .unwrap();
    assert!(!first.layer_reused);
    let mut again = spec(&repo);
    again.tag.push_str("-2");
    again.known_digest = Some(first.layer_digest.clone());
    let second = build_and_push(&reg, std::fs::File::open(&archive).unwrap(), &again)
        .await
        .unwrap();
    assert!(second.layer_reused, "the layer blob was skipped");
    assert_eq!(second.layer_digest, first.layer_digest);

    let mut wrong = spec(&format!("{repo}-w"));
    wrong.known_digest = Some(format!("sha256:{}", "0".repeat(64)));
    let err = build_and_push(&reg, std::fs::File::open(&archive).unwrap(), &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
}

/// The image says the architecture of the node the checkpoint was taken on (from its agent's
/// heartbeat), not the operator's: read back with skopeo.
#[tokio::test]
async fn the_image_platform_is_the_source_nodes_architecture() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let reg = registry(&ep);
    let archive = checkpoint_fixture("small", 0).unwrap();
    let repo = format!("checkpoints/arch-{}/counter", std::process::id());
    let mut s = spec(&repo);
    s.arch = Some("aarch64".into());
    let pushed = build_and_push(&reg, std::fs::File::open(&archive).unwrap(), &s)
        .await
        .unwrap();
    let index = inspect_raw(&ep, &format!("{repo}:{}", pushed.tag));
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "arm64");
    let config: serde_json::Value = serde_json::from_slice(&skopeo(
        &ep,
        &[
            "inspect",
            "--config",
            "--raw",
            "--override-arch",
            "arm64",
            &format!("docker://{}/{repo}@{}", ep.host, pushed.manifest_digest),
        ],
    ))
    .unwrap();
    assert_eq!(config["architecture"], "arm64", "{config}");
}

#[tokio::test]
async fn a_wrong_registry_password_is_an_authentication_error() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let reg = registry_as(&ep, "not-the-password");
    let archive = checkpoint_fixture("small", 0).unwrap();
    let err = build_and_push(
        &reg,
        std::fs::File::open(&archive).unwrap(),
        &spec("checkpoints/auth/x"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImageError::Registry(RegistryError::Auth { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(&ep.host), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_built_straight_from_the_s3_object_the_agent_wrote() {
    use transition_crds::storage::{ArchiveKey, META_SHA256};
    use transition_operator::storage::StoreError;

    let lab = Lab::get().unwrap();
    let s3 = lab.s3().unwrap();
    let ep = lab.registry().unwrap();
    let archive = checkpoint_fixture("small", 0).unwrap();
    let digest = sha256_file(&archive);
    let key = ArchiveKey::new(
        "cluster1-azure",
        &format!("worker-{}", std::process::id()),
        "checkpoint-counter-7d9f5_default-counter-2026-11-21T10:00:00Z.tar",
    )
    .unwrap()
    .to_string();
    // The object as the agent leaves it (the agent's own tests prove it writes exactly this).
    let client = s3_client(&s3);
    let unfinished = format!("{key}.unfinished.tar");
    client
        .put_object()
        .bucket(&s3.bucket)
        .key(&unfinished)
        .body(std::fs::read(&archive).unwrap().into())
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket(&s3.bucket)
        .key(&key)
        .metadata(META_SHA256, digest.trim_start_matches("sha256:"))
        .body(std::fs::read(&archive).unwrap().into())
        .send()
        .await
        .unwrap();

    let store = archive_store(&s3, Duration::from_secs(60));
    assert!(
        matches!(
            store.ready(&unfinished).await,
            Err(StoreError::NotReady { .. })
        ),
        "no sha256 yet: not used"
    );
    let object = store.ready(&key).await.unwrap();
    assert_eq!(object.digest, digest);

    // Uploaded in parts: no metadata, a digest record beside it (`+` in a non-UTC timestamp).
    let parts_key = ArchiveKey::new(
        "cluster1-azure",
        &format!("worker-{}", std::process::id()),
        "checkpoint-counter-7d9f5_default-counter-2026-11-21T11:00:00+01:00.tar",
    )
    .unwrap();
    let put = |k: String, body: Vec<u8>| {
        client
            .put_object()
            .bucket(&s3.bucket)
            .key(k)
            .body(body.into())
            .send()
    };
    put(parts_key.to_string(), std::fs::read(&archive).unwrap())
        .await
        .unwrap();
    let parts_key_s = parts_key.to_string();
    assert!(
        matches!(
            store.ready(&parts_key_s).await,
            Err(StoreError::NotReady { .. })
        ),
        "no digest record yet: not used"
    );
    let record = |size: u64| transition_crds::storage::DigestRecord {
        sha256: digest.trim_start_matches("sha256:").to_owned(),
        size,
        source_mtime: "1".into(),
    };
    put(parts_key.digest_key(), record(object.size + 1).to_bytes())
        .await
        .unwrap();
    let e = store.ready(&parts_key_s).await.unwrap_err();
    assert!(matches!(e, StoreError::SizeMismatch { .. }), "{e}");
    put(parts_key.digest_key(), b"\x00SECRET garbage".to_vec())
        .await
        .unwrap();
    let e = store.ready(&parts_key_s).await.unwrap_err().to_string();
    assert!(
        e.contains("not a digest record") && !e.contains("SECRET"),
        "{e}"
    );
    put(parts_key.digest_key(), record(object.size).to_bytes())
        .await
        .unwrap();
    assert_eq!(store.ready(&parts_key_s).await.unwrap().digest, digest);
    store.delete(&parts_key_s).await.unwrap();
    for k in [parts_key_s.clone(), parts_key.digest_key()] {
        assert!(
            client
                .head_object()
                .bucket(&s3.bucket)
                .key(&k)
                .send()
                .await
                .is_err(),
            "{k} deleted with its archive"
        );
    }

    let mut s = spec(&format!("checkpoints/s3-{}/counter", std::process::id()));
    s.known_digest = Some(object.digest.clone());
    let reg = registry(&ep);
    let pushed = build_and_push(&reg, store.open(&key).await.unwrap(), &s)
        .await
        .unwrap();
    assert_eq!(
        pushed.layer_digest, object.digest,
        "layer digest = the agent's recorded sha256"
    );
    assert_eq!(pushed.layer_size, object.size);
}

/// A registry standing in for Docker Hub's token flow (no such server runs here): `/v2/...` wants
/// `Bearer tok-123`; `/token` issues it for the right basic credentials and the asked scope.
#[tokio::test]
async fn the_bearer_token_flow_fetches_a_token_and_retries() {
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let realm = format!("http://{host}/token");
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::get(|headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                let q = q.unwrap_or_default();
                // "u:p" in base64 is dTpw.
                if basic == "Basic dTpw" && q.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush") {
                    (StatusCode::OK, r#"{"token":"tok-123"}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, "{}")
                }
            }),
        )
        .fallback(move |headers: HeaderMap| {
            let realm = realm.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                if auth == "Bearer tok-123" {
                    (StatusCode::NOT_FOUND, HeaderMap::new())
                } else {
                    let mut h = HeaderMap::new();
                    let challenge = format!(r#"Bearer realm="{realm}",service="stub",scope="repository:team/app:pull,push""#);
                    h.insert("www-authenticate", challenge.parse().unwrap());
                    (StatusCode::UNAUTHORIZED, h)
                }
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = |password: &str| RegistryConfig {
        host: host.clone(),
        insecure: true,
        credentials: Some(Credentials {
            username: "u".into(),
            password: password.into(),
        }),
        timeout: Duration::from_secs(10),
    };
    let reg = Registry::new(&config("p")).unwrap();
    let exists = reg
        .blob_exists("team/app", &format!("sha256:{}", "a".repeat(64)))
        .await
        .unwrap();
    assert!(
        !exists,
        "the request went through with the token (404 = blob absent)"
    );
    let bad = Registry::new(&config("wrong")).unwrap();
    let err = bad
        .blob_exists("team/app", &format!("sha256:{}", "a".repeat(64)))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Auth { .. }), "{err}");
}
