//! The Syncing phase's triggers against the lab's REAL kube-apiservers, with the Argo CD
//! Application and Flux Kustomization/GitRepository CRDs installed
//! (`operator/tests/fixtures/gitops-agent-crds.yaml`: stand-ins with upstream's group, version,
//! kind, scope and the schema of the fields we touch). Argo CD's and Flux's controllers cannot run
//! here (no images, no network): these tests check what the operator asks of them — the object
//! it patches, in which cluster, with what — not the deploy that follows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use transition_crds::conditions::Status;
use transition_operator::context::{Context, Settings};
use transition_operator::gitops::agents::{Agent, Location, NameTemplate, Trigger};
use transition_operator::k8s::clusters::WorkloadClusters;
use transition_operator::observe::metrics::Metrics;
use transition_operator::transition::phases::syncing::{SyncRequest, request};
use transition_testlab::{Lab, fresh_namespace, repo_root};

const TARGET: &str = "cluster2-aws";

/// Installs the stand-in CRDs on `cluster` (server-side apply: idempotent across tests).
fn install_agent_crds(lab: &Lab, cluster: &str) {
    let kubeconfig = lab.cluster(cluster).unwrap().kubeconfig;
    let file = repo_root().join("operator/tests/fixtures/gitops-agent-crds.yaml");
    for args in [
        vec![
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "transition-tests",
        ],
        vec!["wait", "--for", "condition=Established", "--timeout", "60s"],
    ] {
        let out = Command::new(lab.tool("kubectl").unwrap())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn api(
    client: kube::Client,
    ns: &str,
    gvk: (&str, &str, &str),
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2);
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

fn applications(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    api(
        client,
        ns,
        ("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

async fn create(api: &Api<DynamicObject>, object: Value) {
    let o: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

/// An Argo CD Application as the shipped `clusters/<cluster>/gitops/argocd-application.yaml`.
fn application(name: &str, ns: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"project": "default",
            "source": {"repoURL": "http://git.example.invalid/gitops.git", "targetRevision": "main", "path": format!("clusters/{TARGET}")},
            "destination": {"name": TARGET, "namespace": "default"}}})
}

fn ctx(management: kube::Client, target: kube::Client, triggers: Vec<Trigger>) -> Arc<Context> {
    let clusters = WorkloadClusters::new(management.clone(), None).with_client(TARGET, target);
    Arc::new(
        Context::new(
            management,
            Arc::new(Metrics::default()),
            Duration::from_secs(30),
        )
        .with_settings(Settings {
            sync_triggers: triggers,
            ..Settings::default()
        })
        .with_clusters(clusters),
    )
}

fn req(now: k8s_openapi::jiff::Timestamp) -> SyncRequest<'static> {
    SyncRequest {
        target: TARGET,
        package: "counter",
        policy_ns: "default",
        annotations: Default::default(),
        now,
    }
}

fn trigger(agent: Agent, location: Location, ns: &str, name: &str) -> Trigger {
    Trigger {
        agent,
        location,
        namespace: ns.into(),
        name: NameTemplate::parse("test", name).unwrap(),
    }
}

#[tokio::test]
async fn argo_cd_in_the_hub_gets_operation_sync_on_the_application_named_like_the_target() {
    let lab = Lab::get().unwrap();
    let mgmt = lab.clusters()[0].clone();
    install_agent_crds(&lab, &mgmt);
    let hub = lab.kube_client(&mgmt).await.unwrap();
    let target = lab.kube_client(TARGET).await.unwrap();
    let ns = fresh_namespace(&hub, "argocd").await.unwrap();
    let apps = applications(hub.clone(), &ns);
    create(&apps, application(TARGET, &ns)).await;

    let ctx = ctx(
        hub,
        target,
        vec![trigger(
            Agent::ArgoCd,
            Location::Management,
            &ns,
            "{cluster}",
        )],
    );
    let (state, reason, message) = request(&ctx, &req(k8s_openapi::jiff::Timestamp::now())).await;
    assert_eq!((state, reason), (Status::True, "ArgoCDSync"), "{message}");
    assert!(
        message.contains(&format!(
            "Application {ns}/{TARGET} in the management cluster"
        )),
        "{message}"
    );
    let app = apps.get(TARGET).await.unwrap();
    assert_eq!(
        app.data["operation"],
        json!({"initiatedBy": {"username": "transition-operator"}, "sync": {"prune": true}}),
        "the operation Argo CD's controller runs"
    );
    assert_eq!(
        app.data["spec"]["destination"]["name"], TARGET,
        "the rest of the Application is untouched"
    );
}

#[tokio::test]
async fn argo_cd_per_cluster_patches_the_application_of_the_package_in_the_target_and_a_missing_one_is_named()
 {
    let lab = Lab::get().unwrap();
    install_agent_crds(&lab, TARGET);
    let mgmt = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    let target = lab.kube_client(TARGET).await.unwrap();
    let ns = fresh_namespace(&target, "argocd").await.unwrap();
    let apps = applications(target.clone(), &ns);
    create(&apps, application(&format!("counter-{TARGET}"), &ns)).await;
    let per_package = trigger(Agent::ArgoCd, Location::Target, &ns, "{package}-{cluster}");
    let now = k8s_openapi::jiff::Timestamp::now();

    let c = ctx(mgmt.clone(), target.clone(), vec![per_package]);
    let (state, reason, message) = request(&c, &req(now)).await;
    assert_eq!((state, reason), (Status::True, "ArgoCDSync"), "{message}");
    let app = apps.get(&format!("counter-{TARGET}")).await.unwrap();
    assert_eq!(app.data["operation"]["sync"]["prune"], true);

    let c = ctx(
        mgmt,
        target,
        vec![trigger(Agent::ArgoCd, Location::Target, &ns, "{cluster}")],
    );
    let (state, reason, message) = request(&c, &req(now)).await;
    assert_eq!((state, reason), (Status::False, "NoSyncObject"));
    assert!(
        message.contains(&format!(
            "no Argo CD Application {ns}/{TARGET} in the target cluster"
        )) && message.contains("next poll"),
        "{message}"
    );
}

#[tokio::test]
async fn flux_gets_requested_at_on_the_kustomization_and_its_git_repository_in_the_target() {
    let lab = Lab::get().unwrap();
    install_agent_crds(&lab, TARGET);
    let mgmt = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    let target = lab.kube_client(TARGET).await.unwrap();
    let ns = fresh_namespace(&target, "flux-system").await.unwrap();
    let sources = api(
        target.clone(),
        &ns,
        ("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    );
    let kustomizations = api(
        target.clone(),
        &ns,
        ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    );
    create(&sources, json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "gitops", "namespace": ns},
        "spec": {"interval": "1m", "url": "http://git.example.invalid/gitops.git", "ref": {"branch": "main"}}})).await;
    // As the shipped clusters/cluster2-aws/gitops/flux-kustomization.yaml.
    create(
        &kustomizations,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": TARGET, "namespace": ns},
        "spec": {"interval": "30s", "sourceRef": {"kind": "GitRepository", "name": "gitops"},
                 "path": format!("./clusters/{TARGET}"), "prune": true}}),
    )
    .await;

    let now = k8s_openapi::jiff::Timestamp::now();
    let c = ctx(
        mgmt,
        target,
        vec![trigger(Agent::Flux, Location::Target, &ns, "{cluster}")],
    );
    let (state, reason, message) = request(&c, &req(now)).await;
    assert_eq!(
        (state, reason),
        (Status::True, "FluxReconcileRequested"),
        "{message}"
    );
    assert!(
        message.contains("and its GitRepository gitops"),
        "{message}"
    );
    for object in [
        kustomizations.get(TARGET).await.unwrap(),
        sources.get("gitops").await.unwrap(),
    ] {
        assert_eq!(
            object.metadata.annotations.unwrap_or_default()["reconcile.fluxcd.io/requestedAt"],
            now.to_string(),
            "the annotation Flux's controllers reconcile on"
        );
    }
}
