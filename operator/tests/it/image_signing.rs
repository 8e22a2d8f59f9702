//! Image signatures checked by the REAL tools nodes use: a key made by `gpg`, a checkpoint image
//! pushed to the lab's docker-registry and signed by the operator's code, the signatures stored
//! in the lab's S3 (s3s-fs) and served by the operator's lookaside route on 127.0.0.1; then
//! `skopeo standalone-verify` and `skopeo copy` with a `signedBy` policy (containers/image, the
//! library CRI-O and podman verify with) accept it, and refuse an unsigned image, a tampered
//! signature, a signature of another image and a stranger's key.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;
use transition_operator::image::build::PushedImage;
use transition_operator::image::lookaside::{self, SignaturePath, SignatureStore};
use transition_operator::image::registry::RegistryError;
use transition_operator::image::signing::{SigningError, sign_pushed};
use transition_testlab::{Lab, RegistryEndpoint, checkpoint_fixture};

use crate::images_support::{
    GpgKey, archive_store, push_fixture, registry, s3_client, signature_store,
};

/// A fresh checkpoint image in its own repository.
async fn push(ep: &RegistryEndpoint, name: &str) -> (String, PushedImage) {
    let repo = format!("checkpoints/sig-{}/{name}", std::process::id());
    let pushed = push_fixture(&registry(ep), &repo).await;
    (repo, pushed)
}

/// A fresh key, and an image `name` pushed and signed with it (its signatures in the lab's S3).
async fn push_signed(
    lab: &Lab,
    ep: &RegistryEndpoint,
    name: &str,
) -> (GpgKey, SignatureStore, String, PushedImage) {
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let store = signature_store(lab);
    let (repo, pushed) = push(ep, name).await;
    sign_pushed(&key.secret_file, &store, &pushed, &repo, now())
        .await
        .unwrap();
    (key, store, repo, pushed)
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The operator's lookaside route, served in-process on a free port: its base URL.
async fn serve_lookaside(store: SignatureStore) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, lookaside::router(store))
            .await
            .unwrap();
    });
    format!("http://{addr}/{}", lookaside::PREFIX)
}

/// A node's trust configuration: `policy.json` requiring `public_key` for the lab registry and
/// a `registries.d` naming `lookaside` for it.
struct NodeTrust {
    dir: TempDir,
}

impl NodeTrust {
    fn new(registry_host: &str, public_key: &Path, lookaside: &str) -> NodeTrust {
        let dir = tempfile::tempdir().unwrap();
        let policy = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {registry_host: [{
                "type": "signedBy",
                "keyType": "GPGKeys",
                "keyPath": public_key,
            }]}},
        });
        std::fs::write(dir.path().join("policy.json"), policy.to_string()).unwrap();
        std::fs::create_dir(dir.path().join("registries.d")).unwrap();
        std::fs::write(
            dir.path().join("registries.d/transition.yaml"),
            format!("docker:\n  \"{registry_host}\":\n    lookaside: {lookaside}\n"),
        )
        .unwrap();
        NodeTrust { dir }
    }

    /// `skopeo copy` of `reference` (`host/repo@sha256:<index>`, as the nodes pull) under this
    /// policy, on a blocking thread (the lookaside is served by this process).
    async fn pull(&self, ep: &RegistryEndpoint, reference: &str) -> Output {
        let d = self.dir.path().to_owned();
        let creds = format!("{}:{}", ep.user, ep.password);
        let src = format!("docker://{reference}");
        tokio::task::spawn_blocking(move || {
            let out = d.join(format!("pulled-{}", rand_suffix()));
            Command::new("skopeo")
                .arg("--policy")
                .arg(d.join("policy.json"))
                .arg("--registries.d")
                .arg(d.join("registries.d"))
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--src-creds",
                    &creds,
                    &src,
                ])
                .arg(format!("dir:{}", out.display()))
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `NodeTrust::pull` of `reference` under a policy trusting `key`, its lookaside the folder `dir`.
async fn pull_with_file_lookaside(
    ep: &RegistryEndpoint,
    key: &GpgKey,
    dir: &TempDir,
    reference: &str,
) -> Output {
    let url = format!("file://{}", dir.path().display());
    NodeTrust::new(&ep.host, &key.public_file, &url)
        .pull(ep, reference)
        .await
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file:// lookaside holding `signatures` (`(repo, digest, blob)`), as containers/image lays
/// it out: `<dir>/<repo>@sha256=<hex>/signature-1`.
fn file_lookaside(signatures: &[(&str, &str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (repo, digest, blob) in signatures {
        let p = dir
            .path()
            .join(SignaturePath::of(repo, digest, 1).unwrap().relative());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, blob).unwrap();
    }
    dir
}

async fn stored(store: &SignatureStore, repo: &str, digest: &str) -> Vec<u8> {
    store
        .get(&SignaturePath::of(repo, digest, 1).unwrap())
        .await
        .unwrap()
        .expect("a stored signature")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_standalone_verify_accepts_the_operators_signatures_of_the_index_and_the_manifest() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let store = signature_store(&lab);
    let (repo, pushed) = push(&ep, "verify").await;
    let signed = sign_pushed(&key.secret_file, &store, &pushed, &repo, now())
        .await
        .unwrap();
    assert_eq!(signed.fingerprint, key.fingerprint, "the gpg key signed");
    assert_eq!(
        signed.digests,
        [pushed.index_digest.clone(), pushed.manifest_digest.clone()]
    );
    let identity = format!("{}/{repo}:{}", ep.host, pushed.tag);
    let reg = registry(&ep);
    let dir = tempfile::tempdir().unwrap();
    for digest in [&pushed.index_digest, &pushed.manifest_digest] {
        let (manifest, _) = reg.get_manifest(&repo, digest).await.unwrap();
        let manifest_file = dir.path().join("manifest.json");
        std::fs::write(&manifest_file, &manifest).unwrap();
        let sig_file = dir.path().join("signature-1");
        std::fs::write(&sig_file, stored(&store, &repo, digest).await).unwrap();
        let out = Command::new("skopeo")
            .env("GNUPGHOME", key.home.path())
            .arg("standalone-verify")
            .args([&manifest_file, Path::new(&identity)])
            .arg(&key.fingerprint)
            .arg(&sig_file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{digest}: {}", stderr(&out));
        assert!(said.contains(digest.as_str()), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_by_index_digest_through_the_operators_http_lookaside_passes_a_signed_by_policy_and_a_strangers_key_does_not()
 {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let (key, store, _, pushed) = push_signed(&lab, &ep, "pull").await;
    let stranger = GpgKey::generate("someone else <else@example.com>");
    let base = serve_lookaside(store.clone()).await;

    let node = NodeTrust::new(&ep.host, &key.public_file, &base);
    let out = node.pull(&ep, &pushed.reference).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let suspicious = NodeTrust::new(&ep.host, &stranger.public_file, &base);
    let out = suspicious.pull(&ep, &pushed.reference).await;
    assert!(!out.status.success(), "a stranger's key accepted it");
    // gpgme: the signing key is not among the policy's keys ("No public key").
    assert!(
        stderr(&out).contains("Invalid GPG signature"),
        "refused for the key: {}",
        stderr(&out)
    );

    // The same policy refuses an image the operator did not sign.
    let (_, unsigned) = push(&ep, "unsigned").await;
    let out = node.pull(&ep, &unsigned.reference).await;
    assert!(!out.status.success(), "an unsigned image was accepted");
    assert!(
        stderr(&out).contains("no signature exists"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_signature_or_a_signature_of_another_image_is_refused() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let store = signature_store(&lab);
    let (repo, pushed) = push(&ep, "tamper").await;
    let (other_repo, other) = push(&ep, "other").await;
    sign_pushed(&key.secret_file, &store, &pushed, &repo, now())
        .await
        .unwrap();
    sign_pushed(&key.secret_file, &store, &other, &other_repo, now())
        .await
        .unwrap();
    let (index_sig, manifest_sig) = (
        stored(&store, &repo, &pushed.index_digest).await,
        stored(&store, &repo, &pushed.manifest_digest).await,
    );

    // The untouched copies pass through a file:// lookaside (the control case).
    let good = file_lookaside(&[
        (&repo, &pushed.index_digest, &index_sig),
        (&repo, &pushed.manifest_digest, &manifest_sig),
    ]);
    let out = pull_with_file_lookaside(&ep, &key, &good, &pushed.reference).await;
    assert!(out.status.success(), "control: {}", stderr(&out));

    // One byte of the signed payload changed.
    let mut tampered = manifest_sig.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let bad = file_lookaside(&[
        (&repo, &pushed.index_digest, &index_sig),
        (&repo, &pushed.manifest_digest, &tampered),
    ]);
    let out = pull_with_file_lookaside(&ep, &key, &bad, &pushed.reference).await;
    assert!(!out.status.success(), "a tampered signature was accepted");
    assert!(
        stderr(&out).contains("signature"),
        "refused for the signature: {}",
        stderr(&out)
    );

    // The other image's valid signatures, copied to this image's places.
    let (other_index, other_manifest) = (
        stored(&store, &other_repo, &other.index_digest).await,
        stored(&store, &other_repo, &other.manifest_digest).await,
    );
    let moved = file_lookaside(&[
        (&repo, &pushed.index_digest, &other_index),
        (&repo, &pushed.manifest_digest, &other_manifest),
    ]);
    let out = pull_with_file_lookaside(&ep, &key, &moved, &pushed.reference).await;
    assert!(
        !out.status.success(),
        "another image's signature was accepted"
    );
    let why = stderr(&out);
    assert!(
        why.contains("does not match") || why.contains("not accepted"),
        "{why}"
    );
}

/// containers/image checks the PLATFORM MANIFEST's signature when a pull by index digest picks
/// the node's platform: the index's alone is not enough (why the operator signs both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_by_index_digest_checks_the_platform_manifests_signature() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let (key, store, repo, pushed) = push_signed(&lab, &ep, "instance").await;
    let index_sig = stored(&store, &repo, &pushed.index_digest).await;
    let only_index = file_lookaside(&[(&repo, &pushed.index_digest, &index_sig)]);
    let out = pull_with_file_lookaside(&ep, &key, &only_index, &pushed.reference).await;
    assert!(
        !out.status.success(),
        "the index's signature alone was enough"
    );
    assert!(
        stderr(&out).contains("no signature exists"),
        "refused for the missing manifest signature: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_signatures_are_gone_from_s3_and_the_lookaside_answers_404_and_400() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let (_key, store, repo, pushed) = push_signed(&lab, &ep, "delete").await;
    let base = serve_lookaside(store.clone()).await;
    let http = reqwest::Client::new();
    let url = |digest: &str, n: u32| {
        format!(
            "{base}/{}",
            SignaturePath::of(&repo, digest, n).unwrap().relative()
        )
    };
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(url(&pushed.manifest_digest, 1)).await, 200);
    assert_eq!(
        get(url(&pushed.manifest_digest, 2)).await,
        404,
        "no second one"
    );
    assert_eq!(get(format!("{base}/{repo}/../x")).await, 400);
    assert_eq!(get(format!("{base}/..%2f..%2fetc%2fpasswd")).await, 400);

    store
        .delete_image(&repo, &pushed.index_digest)
        .await
        .unwrap();
    for digest in [&pushed.index_digest, &pushed.manifest_digest] {
        assert_eq!(get(url(digest, 1)).await, 404, "{digest} deleted");
    }
    // Deleting again (a retried cleanup) is not an error.
    store
        .delete_image(&repo, &pushed.index_digest)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_public_key_file_configured_as_the_signing_key_signs_nothing() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let armored_public = key.armored_public_file();
    let store = signature_store(&lab);
    let (repo, pushed) = push(&ep, "public").await;
    let err = sign_pushed(&armored_public, &store, &pushed, &repo, now())
        .await
        .unwrap_err();
    assert!(matches!(err, SigningError::Key(_)), "{err}");
    assert!(!err.transient(), "the key file must be fixed");
    assert!(err.to_string().contains("PUBLIC"), "{err}");
    assert!(
        store
            .get(&SignaturePath::of(&repo, &pushed.index_digest, 1).unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing stored"
    );
}

/// The archive the agent leaves in S3 (sha256 in its metadata) for a run to build from.
async fn agent_upload(lab: &Lab, node: &str) -> String {
    let s3 = lab.s3().unwrap();
    let archive = checkpoint_fixture("small", 0).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let key = transition_crds::storage::ArchiveKey::new(
        "cluster1-azure",
        node,
        "checkpoint-counter-7d9f5_default-counter-2026-12-08T01:00:00Z.tar",
    )
    .unwrap()
    .to_string();
    let client = s3_client(&s3);
    client
        .put_object()
        .bucket(&s3.bucket)
        .key(&key)
        .metadata(transition_crds::storage::META_SHA256, sha)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    key
}

/// A run's image step with `--image-signing-key-file`: the image it records verifies under the
/// nodes' policy; with a key file that cannot sign the step fails, ending the run, and the
/// unsigned image is gone from the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_only_images_it_signed_and_a_key_that_cannot_sign_ends_the_run() {
    use std::sync::Arc;
    use transition_crds::checkpoint::RunArchive;
    use transition_operator::checkpoint::run::{Built, Target, build_image};
    use transition_operator::context::{Context, Settings};

    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let store = signature_store(&lab);
    let s3 = lab.s3().unwrap();
    let archives = archive_store(&s3, Duration::from_secs(30));
    let context = |key_file: &Path| {
        Context::new(
            client.clone(),
            Arc::new(transition_operator::observe::metrics::Metrics::default()),
            Duration::from_secs(300),
        )
        .with_settings(Settings {
            image_signing_key_file: Some(key_file.to_owned()),
            ..Settings::default()
        })
        .with_store(archives.clone())
    };
    let checkpoint = |name: &str| -> transition_crds::Checkpoint {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedule": "@manual", "clusterRef": {"name": "cluster1-azure"},
                     "podRef": {"namespace": "default", "name": "counter-a",
                                "containerRef": {"containers": [{"name": "counter"}]}},
                     "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "namespace": "default", "name": name},
                     "registry": {"url": format!("http://{}", ep.host),
                                  "repository": format!("checkpoints/sig-run-{}", std::process::id())}}
        }))
        .unwrap()
    };
    let run_archive = |key: String| RunArchive {
        container: "counter".into(),
        archive_key: key,
        taken_at: None,
        image: None,
        size_bytes: None,
    };
    let now = k8s_openapi::jiff::Timestamp::now();

    let signed = checkpoint("signed");
    let target = Target::of(&signed, "default/signed".into()).unwrap();
    let archive = run_archive(agent_upload(&lab, &format!("sig-{}", std::process::id())).await);
    let built = build_image(
        &context(&key.secret_file),
        &target,
        &archives,
        &registry(&ep),
        &archive,
        now,
    )
    .await
    .unwrap();
    let Built::Image(reference, _) = built else {
        panic!("the upload is there: {built:?}")
    };
    let base = serve_lookaside(store.clone()).await;
    let out = NodeTrust::new(&ep.host, &key.public_file, &base)
        .pull(&ep, &reference)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let armored_public = key.armored_public_file();
    let refused = checkpoint("refused");
    let target = Target::of(&refused, "default/refused".into()).unwrap();
    let err = build_image(
        &context(&armored_public),
        &target,
        &archives,
        &registry(&ep),
        &archive,
        now,
    )
    .await
    .unwrap_err();
    assert_eq!(err.metric_label(), "Sign", "{err}");
    assert!(err.ends_the_run(), "the key file must be fixed: {err}");
    assert!(err.to_string().contains("PUBLIC"), "{err}");
    let (name, _) = err
        .to_string()
        .split_once(" was pushed")
        .map(|(a, _)| (a.rsplit(' ').next().unwrap().to_owned(), ()))
        .unwrap();
    let (_, digest) = name.split_once('@').unwrap();
    let repo = name.split_once('/').unwrap().1.split_once('@').unwrap().0;
    assert!(
        matches!(
            registry(&ep).get_manifest(repo, digest).await,
            Err(RegistryError::Status { status: 404, .. })
        ),
        "the unsigned image {name} was deleted"
    );
}

/// The operator binary kills its process when the test ends.
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `transition-operator` binary serves the lookaside on its heartbeat endpoint (from
/// the bucket of `--s3-endpoint`): a node's pull through it passes the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_serves_the_lookaside_on_its_heartbeat_endpoint() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let s3 = lab.s3().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    transition_operator::k8s::crd_install::install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = transition_testlab::fresh_namespace(&client, "sig")
        .await
        .unwrap();
    let (key, _store, repo, pushed) = push_signed(&lab, &ep, "served").await;

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let tokens = file("tokens", "cluster1-azure=0123456789abcdef0123\n");
    let access = file("access", &s3.access_key);
    let secret = file("secret", &s3.secret_key);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = lab.cluster(&lab.clusters()[0]).unwrap().kubeconfig;
    let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
    let _operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_transition-operator"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--namespace", &ns, "--operator-namespace", &ns])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .args(["--heartbeat-addr", &format!("127.0.0.1:{port}")])
            .arg("--heartbeat-tokens-file")
            .arg(&tokens)
            .args(["--s3-endpoint", &s3.endpoint, "--s3-region", &s3.region])
            .args(["--s3-bucket", &s3.bucket])
            .arg("--s3-access-key-file")
            .arg(&access)
            .arg("--s3-secret-key-file")
            .arg(&secret)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}/{}", lookaside::PREFIX);
    let first = format!(
        "{base}/{}",
        SignaturePath::of(&repo, &pushed.manifest_digest, 1)
            .unwrap()
            .relative()
    );
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        match http.get(&first).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                let log = std::fs::read_to_string(dir.path().join("operator.log")).unwrap();
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the lookaside never answered: {other:?}\n{log}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let out = NodeTrust::new(&ep.host, &key.public_file, &base)
        .pull(&ep, &pushed.reference)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_made_by_gpg_signs_images_the_nodes_accept() {
    let lab = Lab::get().unwrap();
    let ep = lab.registry().unwrap();
    let key = GpgKey::generate_with("transition-operator <ops@example.com>", "rsa3072");
    let store = signature_store(&lab);
    let (repo, pushed) = push(&ep, "rsa").await;
    let signed = sign_pushed(&key.secret_file, &store, &pushed, &repo, now())
        .await
        .unwrap();
    assert_eq!(signed.fingerprint, key.fingerprint);
    let base = serve_lookaside(store.clone()).await;
    let out = NodeTrust::new(&ep.host, &key.public_file, &base)
        .pull(&ep, &pushed.reference)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
}
