//! Helpers the image tests share (`image_*`, `checkpoint_cleanup`): a `Registry` and an
//! `ImageSpec` for the lab's docker-registry, clients of the lab's S3, a GnuPG signing key, and a
//! checked `Command` runner.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;
use transition_operator::image::archive::Limits;
use transition_operator::image::build::{ImageSpec, PushedImage, build_and_push, timestamp_tag};
use transition_operator::image::lookaside::SignatureStore;
use transition_operator::image::registry::{Credentials, Registry, RegistryConfig};
use transition_operator::storage::{ArchiveStore, StoreConfig};
use transition_testlab::{Lab, RegistryEndpoint, S3Endpoint, checkpoint_fixture};

/// A `Registry` for the lab's registry with its user and password.
pub fn registry(ep: &RegistryEndpoint) -> Registry {
    registry_as(ep, &ep.password)
}

/// A `Registry` for the lab's registry with its user and `password`.
pub fn registry_as(ep: &RegistryEndpoint, password: &str) -> Registry {
    Registry::new(&RegistryConfig {
        host: ep.host.clone(),
        insecure: true,
        credentials: Some(Credentials {
            username: ep.user.clone(),
            password: password.to_owned(),
        }),
        timeout: Duration::from_secs(60),
    })
    .unwrap()
}

/// A plaintext image of `repo`, tagged with the time now, no moving tag.
pub fn spec(repo: &str) -> ImageSpec {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    ImageSpec {
        repo: repo.to_owned(),
        tag: timestamp_tag(&now),
        moving_tag: None,
        // Small chunks: the layer is uploaded (and encrypted) in many pieces.
        chunk_size: 64 << 10,
        limits: Limits::default(),
        known_digest: None,
        created: now,
        arch: None,
        unseal: Default::default(),
        encryption: None,
    }
}

/// The small fixture archive (a real CRIU checkpoint) pushed to `repo` as a fresh image.
pub async fn push_fixture(reg: &Registry, repo: &str) -> PushedImage {
    let archive = checkpoint_fixture("small", 0).unwrap();
    build_and_push(reg, std::fs::File::open(&archive).unwrap(), &spec(repo))
        .await
        .unwrap()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An AWS SDK client of the lab's S3 (path-style, its static credentials).
pub fn s3_client(s3: &S3Endpoint) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials as S3Creds, Region};
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(s3.region.clone()))
            .endpoint_url(&s3.endpoint)
            .credentials_provider(S3Creds::new(
                &s3.access_key,
                &s3.secret_key,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build(),
    )
}

/// The operator's `ArchiveStore` of the lab's bucket.
pub fn archive_store(s3: &S3Endpoint, timeout: Duration) -> ArchiveStore {
    ArchiveStore::new(&StoreConfig {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        access_key: s3.access_key.clone(),
        secret_key: s3.secret_key.clone(),
        timeout,
    })
}

/// The signature lookaside in the lab's bucket.
pub fn signature_store(lab: &Lab) -> SignatureStore {
    SignatureStore::new(&archive_store(&lab.s3().unwrap(), Duration::from_secs(30)))
}

/// Runs `cmd` and returns its output; fails the test, with its stderr, when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A GnuPG home with one Ed25519 signing key, made as docs/images.md says.
pub struct GpgKey {
    pub home: TempDir,
    pub fingerprint: String,
    /// `gpg --armor --export-secret-keys`: what the operator's Secret holds.
    pub secret_file: PathBuf,
    /// `gpg --export`: what a node's policy names.
    pub public_file: PathBuf,
}

impl GpgKey {
    pub fn generate(uid: &str) -> GpgKey {
        GpgKey::generate_with(uid, "ed25519")
    }

    /// A primary signing key of `algo` (`ed25519`, `rsa3072`, …).
    pub fn generate_with(uid: &str, algo: &str) -> GpgKey {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let gpg = |args: &[&str]| -> Output {
            let out = Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--no-tty"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]);
        let colons = String::from_utf8(gpg(&["--with-colons", "--fingerprint"]).stdout).unwrap();
        let fingerprint = colons
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .unwrap();
        let secret_file = home.path().join("operator-signing-key.asc");
        std::fs::write(
            &secret_file,
            gpg(&["--armor", "--export-secret-keys", &fingerprint]).stdout,
        )
        .unwrap();
        let public_file = home.path().join("transition.gpg");
        std::fs::write(&public_file, gpg(&["--export", &fingerprint]).stdout).unwrap();
        GpgKey {
            home,
            fingerprint,
            secret_file,
            public_file,
        }
    }

    /// The public key, ASCII-armored (`gpg --armor --export`), written beside the secret one:
    /// a key file that cannot sign.
    pub fn armored_public_file(&self) -> PathBuf {
        let armored_public = self.home.path().join("public.asc");
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--armor", "--export", &self.fingerprint])
            .output()
            .unwrap();
        std::fs::write(&armored_public, &out.stdout).unwrap();
        armored_public
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        // The agent gpg started for this home; nothing else is touched.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
