//! Checkpoint OCI images: archive validation, the registry client, the streaming builder.

pub mod archive;
pub mod build;
pub mod credentials;
pub mod registry;

pub use credentials::{credentials_from_docker_config, credentials_from_secret};
