//! Checkpoint OCI images: archive validation, the registry client, the streaming builder, age
//! decryption of sealed archives and ocicrypt encryption of the layer.

pub mod age_archive;
pub mod archive;
pub mod build;
pub mod credentials;
pub mod lookaside;
pub mod ocicrypt;
pub mod registry;
pub mod sign;
pub mod signing;

pub use credentials::{credentials_from_docker_config, credentials_from_secret};
