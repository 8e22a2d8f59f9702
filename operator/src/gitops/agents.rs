//! Sync triggers for the GitOps agents that deploy the commit (pure; the Syncing phase sends
//! them): which agent, in which cluster its objects live, which object serves a target folder,
//! and the patch that asks it to act now.
//!
//! * Argo CD: `operation.sync` on an `argoproj.io/v1alpha1` Application — in the hub (the
//!   management cluster, the shipped example: one Application per cluster with
//!   `destination.name`), in each target cluster, or in a named cluster.
//! * Flux: the `reconcile.fluxcd.io/requestedAt` annotation on the
//!   `kustomize.toolkit.fluxcd.io/v1` Kustomization serving the folder and on its source (the
//!   `GitRepository`), as `flux reconcile kustomization --with-source` does.

use std::fmt;

use serde_json::{Value, json};

/// The annotation Flux controllers watch to reconcile outside their interval.
pub const FLUX_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// Placeholders an object-name template may use.
const PLACEHOLDERS: [&str; 2] = ["{cluster}", "{package}"];

/// Where a GitOps agent's objects (Applications, Kustomizations) live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The cluster the operator runs in (an Argo CD hub next to the operator).
    Management,
    /// The target cluster of each transition (an agent per cluster).
    Target,
    /// A named cluster whose credentials the operator has (`<name>-kubeconfig` Secret).
    Cluster(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Management => f.write_str("the management cluster"),
            Location::Target => f.write_str("the target cluster"),
            Location::Cluster(c) => write!(f, "cluster {c}"),
        }
    }
}

/// Why a trigger setting is refused (the operator does not start).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error(
        "failed to read {flag} {value:?}: expected off, management, target or a cluster name (lowercase DNS label)"
    )]
    BadLocation { flag: &'static str, value: String },
    #[error(
        "failed to read {flag} {value:?}: {reason} (a name template may use {{cluster}} and {{package}})"
    )]
    BadTemplate {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// `off` → `None`, else where the agent runs.
pub fn parse_location(flag: &'static str, value: &str) -> Result<Option<Location>, TriggerError> {
    let v = value.trim();
    let bad = || TriggerError::BadLocation {
        flag,
        value: value.to_owned(),
    };
    Ok(match v {
        "off" | "none" | "" => None,
        "management" | "hub" => Some(Location::Management),
        "target" | "per-cluster" => Some(Location::Target),
        name if is_dns_label(name) => Some(Location::Cluster(name.to_owned())),
        _ => return Err(bad()),
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An object-name template such as `{cluster}` or `{package}-{cluster}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate(String);

impl NameTemplate {
    /// Checks `value` for flag `flag`: only known placeholders, and the rest a valid name part.
    pub fn parse(flag: &'static str, value: &str) -> Result<NameTemplate, TriggerError> {
        let bad = |reason: &str| TriggerError::BadTemplate {
            flag,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = value.to_owned();
        for p in PLACEHOLDERS {
            rest = rest.replace(p, "x");
        }
        if rest.contains(['{', '}']) {
            return Err(bad("unknown placeholder"));
        }
        if rest.is_empty()
            || !rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(bad(
                "not a Kubernetes object name (lowercase letters, digits, '-' and '.')",
            ));
        }
        Ok(NameTemplate(value.to_owned()))
    }

    /// The object name for `cluster` and `package`.
    pub fn render(&self, cluster: &str, package: &str) -> String {
        self.0
            .replace("{cluster}", cluster)
            .replace("{package}", package)
    }
}

/// Which GitOps agent a trigger talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agent {
    ArgoCd,
    Flux,
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Agent::ArgoCd => "Argo CD",
            Agent::Flux => "Flux",
        })
    }
}

/// One configured sync trigger: agent, where its objects live, namespace and name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub agent: Agent,
    pub location: Location,
    pub namespace: String,
    pub name: NameTemplate,
}

impl Trigger {
    /// The cluster holding the agent's object for a transition to `target` (`None`: the
    /// management cluster).
    pub fn cluster<'a>(&'a self, target: &'a str) -> Option<&'a str> {
        match &self.location {
            Location::Management => None,
            Location::Target => Some(target),
            Location::Cluster(c) => Some(c),
        }
    }
}

/// The merge patch that starts an Argo CD sync of the Application (its controller runs the
/// operation and clears the field; `prune` takes out what left the folder, i.e. the fence).
pub fn argocd_sync_patch() -> Value {
    json!({"operation": {
        "initiatedBy": {"username": "transition-operator"},
        "sync": {"prune": true}
    }})
}

/// The merge patch that asks a Flux controller to reconcile now (`requested_at`: any new value
/// triggers; Flux's CLI writes the current time in RFC 3339).
pub fn flux_reconcile_patch(requested_at: &str) -> Value {
    json!({"metadata": {"annotations": {FLUX_REQUESTED_AT: requested_at}}})
}

/// The source a Flux Kustomization reads, from its `spec.sourceRef`: `(kind, namespace, name)`
/// (namespace defaults to the Kustomization's). `None` when the object names none.
pub fn flux_source_ref(kustomization: &Value, own_namespace: &str) -> Option<FluxSource> {
    let r = kustomization.get("spec")?.get("sourceRef")?;
    let kind = r.get("kind")?.as_str()?.to_owned();
    let name = r.get("name")?.as_str()?.to_owned();
    let namespace = r
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(own_namespace)
        .to_owned();
    Some(FluxSource {
        kind,
        namespace,
        name,
    })
}

/// A Flux source object (`GitRepository`, `OCIRepository`, `Bucket`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluxSource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl FluxSource {
    /// `(group, version, plural)` of the kinds Flux's source-controller serves at v1, if known.
    pub fn resource(&self) -> Option<(&'static str, &'static str, &'static str)> {
        match self.kind.as_str() {
            "GitRepository" => Some(("source.toolkit.fluxcd.io", "v1", "gitrepositories")),
            "OCIRepository" => Some(("source.toolkit.fluxcd.io", "v1", "ocirepositories")),
            "Bucket" => Some(("source.toolkit.fluxcd.io", "v1", "buckets")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_off_management_target_and_cluster_names() {
        let p = |v| parse_location("--argocd-cluster", v);
        assert_eq!(p("off"), Ok(None));
        assert_eq!(p("management"), Ok(Some(Location::Management)));
        assert_eq!(p("target"), Ok(Some(Location::Target)));
        assert_eq!(p("hub"), Ok(Some(Location::Management)));
        assert_eq!(
            p("argocd-hub"),
            Ok(Some(Location::Cluster("argocd-hub".into())))
        );
        let e = p("Hub Cluster").unwrap_err().to_string();
        assert!(
            e.contains("--argocd-cluster") && e.contains("\"Hub Cluster\""),
            "{e}"
        );
    }

    #[test]
    fn name_templates_render_cluster_and_package_and_refuse_unknown_placeholders() {
        let t = NameTemplate::parse("--argocd-application", "{package}-{cluster}").unwrap();
        assert_eq!(t.render("cluster2-aws", "counter"), "counter-cluster2-aws");
        let e = NameTemplate::parse("--argocd-application", "{namespace}-{cluster}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown placeholder") && e.contains("{cluster}"),
            "{e}"
        );
        assert!(NameTemplate::parse("--flux-kustomization", "Apps").is_err());
        assert!(NameTemplate::parse("--flux-kustomization", "").is_err());
    }

    #[test]
    fn the_trigger_cluster_follows_its_location() {
        let t = |location| Trigger {
            agent: Agent::ArgoCd,
            location,
            namespace: "argocd".into(),
            name: NameTemplate("{cluster}".into()),
        };
        assert_eq!(t(Location::Management).cluster("c2"), None);
        assert_eq!(t(Location::Target).cluster("c2"), Some("c2"));
        assert_eq!(
            t(Location::Cluster("hub".into())).cluster("c2"),
            Some("hub")
        );
    }

    #[test]
    fn a_flux_source_ref_defaults_to_the_kustomization_namespace() {
        let k: Value = serde_saphyr::from_str(
            "spec:\n  sourceRef: {kind: GitRepository, name: gitops}\n  path: ./clusters/c2\n",
        )
        .unwrap();
        let s = flux_source_ref(&k, "flux-system").unwrap();
        assert_eq!(
            s,
            FluxSource {
                kind: "GitRepository".into(),
                namespace: "flux-system".into(),
                name: "gitops".into()
            }
        );
        assert_eq!(
            s.resource(),
            Some(("source.toolkit.fluxcd.io", "v1", "gitrepositories"))
        );
        assert!(flux_source_ref(&serde_json::json!({"spec": {}}), "x").is_none());
        assert_eq!(
            flux_reconcile_patch("2026-12-02T19:00:00Z")["metadata"]["annotations"]
                [FLUX_REQUESTED_AT],
            "2026-12-02T19:00:00Z"
        );
    }
}
