//! `checkpoint-image`: builds the checkpoint OCI image of a kubelet checkpoint archive file and
//! pushes it (the operator does the same from S3). Prints the pushed image as JSON.
//! `--age-identity-file` reads an age-encrypted archive (as the agent uploads it);
//! `--encryption-key` pushes the layer encrypted for each RSA public key (ocicrypt).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use transition_operator::image::age_archive::{AgeIdentities, Unseal};
use transition_operator::image::archive::Limits;
use transition_operator::image::build::{
    ImageSpec, LayerEncryption, build_and_push, timestamp_tag,
};
use transition_operator::image::credentials_from_docker_config;
use transition_operator::image::ocicrypt;
use transition_operator::image::registry::{Credentials, Registry, RegistryConfig};

/// Build and push a checkpoint image.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Config {
    /// The kubelet checkpoint archive (`checkpoint-<pod>_<ns>-<container>-<time>.tar`).
    #[arg(long, env = "ARCHIVE")]
    archive: PathBuf,
    /// Registry `host[:port]`.
    #[arg(long, env = "REGISTRY")]
    registry: String,
    /// Repository inside the registry.
    #[arg(long, env = "REPOSITORY")]
    repository: String,
    /// Immutable tag (default: `ckpt-<UTC time>`).
    #[arg(long, env = "TAG")]
    tag: Option<String>,
    /// Also move this tag to the image.
    #[arg(long, env = "MOVING_TAG")]
    moving_tag: Option<String>,
    /// Plain HTTP / unverified TLS (local registries only).
    #[arg(long, env = "REGISTRY_INSECURE", default_value_t = false)]
    insecure: bool,
    /// Username (with --password-file).
    #[arg(long, env = "REGISTRY_USERNAME")]
    username: Option<String>,
    /// File holding the password or token.
    #[arg(long, env = "REGISTRY_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// A `.dockerconfigjson` file to take credentials from instead.
    #[arg(long, env = "DOCKER_CONFIG_JSON")]
    docker_config: Option<PathBuf>,
    /// Bytes per upload request, in MiB.
    #[arg(long, env = "CHUNK_MIB", default_value_t = 16)]
    chunk_mib: usize,
    /// The archive is an age file: decrypt it (while streaming) with these identities
    /// (`AGE-SECRET-KEY-1…` lines).
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    age_identity_file: Option<PathBuf>,
    /// Push the layer encrypted (ocicrypt, `…tar+encrypted`) for the RSA public keys of this PEM
    /// file; repeat for more files (each may hold several keys).
    #[arg(
        long = "encryption-key",
        env = "ENCRYPTION_KEYS",
        value_delimiter = ','
    )]
    encryption_keys: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let credentials = match (
        &config.docker_config,
        &config.username,
        &config.password_file,
    ) {
        (Some(path), _, _) => {
            credentials_from_docker_config(&std::fs::read(path)?, &config.registry)
                .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?
        }
        (None, Some(username), Some(path)) => Some(Credentials {
            username: username.clone(),
            password: std::fs::read_to_string(path)?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        }),
        _ => None,
    };
    let registry = Registry::new(&RegistryConfig {
        host: config.registry.clone(),
        insecure: config.insecure,
        credentials,
        timeout: Duration::from_secs(300),
    })?;
    let unseal = match &config.age_identity_file {
        None => Unseal::Plain,
        Some(path) => Unseal::Age {
            object: config.archive.display().to_string(),
            identities: Some(std::sync::Arc::new(AgeIdentities::read(path)?)),
        },
    };
    let encryption = if config.encryption_keys.is_empty() {
        None
    } else {
        let mut recipients = Vec::new();
        for path in &config.encryption_keys {
            recipients.extend(ocicrypt::read_key_file(path)?);
        }
        Some(LayerEncryption { recipients })
    };
    let created = k8s_openapi::jiff::Timestamp::now().to_string();
    let spec = ImageSpec {
        repo: config.repository.clone(),
        tag: config
            .tag
            .clone()
            .unwrap_or_else(|| timestamp_tag(&created)),
        moving_tag: config.moving_tag.clone(),
        chunk_size: config.chunk_mib.max(1) << 20,
        limits: Limits::default(),
        known_digest: None,
        created,
        arch: None,
        unseal,
        encryption,
    };
    let file = std::fs::File::open(&config.archive)
        .map_err(|e| anyhow::anyhow!("failed to open {}: {e}", config.archive.display()))?;
    let pushed = build_and_push(&registry, file, &spec).await?;
    println!(
        "{}",
        serde_json::json!({
            "reference": pushed.reference, "tag": pushed.tag, "indexDigest": pushed.index_digest,
            "manifestDigest": pushed.manifest_digest, "layerDigest": pushed.layer_digest,
            "layerSize": pushed.layer_size, "layerReused": pushed.layer_reused, "annotations": pushed.annotations,
            "layerMediaType": pushed.layer_media_type, "archiveDigest": pushed.archive_digest,
        })
    );
    Ok(())
}
