//! Checkpoint OCI images: archive validation, the registry client, the streaming builder.

pub mod archive;
pub mod build;
pub mod registry;
