//! Installs this project's CRDs with server-side apply and waits until the API server serves them.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "transition-operator";

/// Why the CRDs could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("failed to apply CRD {name}: {source}")]
    Apply { name: String, source: kube::Error },
    #[error("failed to see CRD {name} established within {seconds}s")]
    NotEstablished { name: String, seconds: u64 },
    #[error("failed to watch CRD {name}: {source}")]
    Wait {
        name: String,
        source: kube::runtime::wait::Error,
    },
}

/// Applies every CRD of `transition_crds` and waits (bounded) for each to be established.
pub async fn install_crds(client: &kube::Client, timeout: Duration) -> Result<(), InstallError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in transition_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| InstallError::Apply {
                name: name.clone(),
                source,
            })?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => tracing::info!(crd = %name, "CRD established"),
            Ok(Err(source)) => return Err(InstallError::Wait { name, source }),
            Err(_) => {
                return Err(InstallError::NotEstablished {
                    name,
                    seconds: timeout.as_secs(),
                });
            }
        }
    }
    Ok(())
}
