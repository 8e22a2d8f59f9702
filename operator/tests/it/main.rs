//! The operator's integration tests, linked into ONE test binary (each file used to be its own
//! binary, linked separately). Most talk to the lab's real servers (`hack/lab.sh`, reached or
//! started through `transition-testlab`); `reconcilers/` drives the reconcilers against
//! in-process stand-ins and needs no lab.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod checkpoint_cleanup;
mod controllers_faults;
mod crds_apiserver;
mod detection;
mod e2e;
mod fault_occurrences;
mod gitops_git;
mod ha;
mod heartbeat_http;
mod image_crypto;
mod image_registry;
mod image_signing;
mod images_support;
mod kubelet_shim;
mod manifests_apiserver;
mod partition;
mod policy_controller;
mod reconcilers;
mod support;
mod sync_agents;
