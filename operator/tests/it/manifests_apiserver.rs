//! The install we ship (`deploy/management`, `deploy/workload`, rendered by a current kubectl's
//! kustomize 5, as users run `kubectl apply -k`) and the GitOps examples are accepted by REAL
//! kube-apiservers (v1.20 lab, server-side), and the operator's and agent's service accounts can
//! do exactly what they need there: every allowed action is allowed by the API server's authorizer
//! (SubjectAccessReviews), forbidden ones are not, and a forbidden request made as the operator
//! is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::process::{Command, Stdio};

use transition_testlab::{Lab, repo_root};

const OPERATOR_SA: &str = "system:serviceaccount:transition-system:transition-operator";
const AGENT_SA: &str = "system:serviceaccount:transition-system:checkpoint-agent";

/// `kubectl` (the lab's v1.20.2) against `cluster`, with `stdin` when given.
fn kubectl_in(lab: &Lab, cluster: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let kubeconfig = lab.cluster(cluster).unwrap().kubeconfig;
    let mut child = Command::new(lab.tool("kubectl").unwrap())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn kubectl(lab: &Lab, cluster: &str, args: &[&str]) -> (bool, String) {
    kubectl_in(lab, cluster, args, None)
}

/// `folder` rendered as `kubectl apply -k` renders it (kustomize 5).
fn render(lab: &Lab, folder: &str) -> String {
    let out = Command::new(lab.tool("kubectl-current").unwrap())
        .arg("kustomize")
        .arg(repo_root().join(folder))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kustomize {folder}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a rendered install whose kind is in `kinds`.
fn only_kinds(rendered: &str, kinds: &[&str]) -> String {
    rendered
        .split("\n---\n")
        .filter(|doc| {
            doc.lines()
                .any(|l| kinds.iter().any(|k| l == format!("kind: {k}")))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The CRDs, installed as the e2e and users install them (`kubectl apply -k crds/yaml`).
fn install_crds(lab: &Lab, cluster: &str) {
    let crds = repo_root().join("crds/yaml");
    let (ok, out) = kubectl(
        lab,
        cluster,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "transition-operator",
            "-k",
            crds.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    for entry in std::fs::read_dir(&crds).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(crd) = name.strip_suffix(".yaml") else {
            continue;
        };
        if crd == "kustomization" {
            continue;
        }
        let (ok, out) = kubectl(
            lab,
            cluster,
            &[
                "wait",
                "--for",
                "condition=Established",
                "--timeout",
                "60s",
                &format!("crd/{crd}"),
            ],
        );
        assert!(ok, "{out}");
    }
}

/// Whether the API server's authorizer allows service account `who` to do `verb resource` in
/// `namespace` (`""` = cluster-wide): a SubjectAccessReview, what `kubectl auth can-i --as` asks,
/// but with the API group given (kubectl 1.20 drops the group of a resource it does not know, e.g.
/// Argo CD's, when its CRD is not installed). `resource` is `plural[.group][/subresource]`.
fn can_i(lab: &Lab, cluster: &str, who: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let sa_namespace = who.split(':').nth(2).unwrap();
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": who,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{sa_namespace}"), "system:authenticated"],
            "resourceAttributes": {
                "verb": verb, "group": group, "resource": resource,
                "subresource": subresource, "namespace": namespace,
            },
        },
    });
    let (ok, out) = kubectl_in(
        lab,
        cluster,
        &["create", "-f", "-", "-o", "jsonpath={.status.allowed}"],
        Some(&review.to_string()),
    );
    assert!(ok, "SubjectAccessReview of {verb} {resource}: {out}");
    out.trim() == "true"
}

/// Each `(verb, resource, namespace)` is allowed for `who`, and each of `forbidden` is not.
fn check_access(
    lab: &Lab,
    cluster: &str,
    who: &str,
    allowed: &[(&str, &str, &str)],
    forbidden: &[(&str, &str, &str)],
) {
    for (verb, resource, ns) in allowed {
        assert!(
            can_i(lab, cluster, who, verb, resource, ns),
            "{who} on {cluster} needs to {verb} {resource} in {ns:?} and may not"
        );
    }
    for (verb, resource, ns) in forbidden {
        assert!(
            !can_i(lab, cluster, who, verb, resource, ns),
            "{who} on {cluster} may {verb} {resource} in {ns:?}: more than it needs"
        );
    }
}

/// The install's documents are accepted (server-side dry run of every object) and its RBAC
/// objects are created for real.
fn install_rbac(lab: &Lab, cluster: &str, rendered: &str) {
    let (ok, out) = kubectl(lab, cluster, &["create", "namespace", "transition-system"]);
    assert!(ok || out.contains("AlreadyExists"), "{out}");
    let (ok, out) = kubectl_in(
        lab,
        cluster,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(rendered),
    );
    assert!(ok, "the install was rejected by {cluster}: {out}");
    assert!(out.contains("(server dry run)"), "{out}");
    // Only identities and permissions: no Pods start in the shared test lab.
    let rbac = only_kinds(
        rendered,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
    );
    let (ok, out) = kubectl_in(lab, cluster, &["apply", "-f", "-"], Some(&rbac));
    assert!(ok, "{out}");
}

#[test]
fn the_management_install_is_accepted_and_the_operator_may_do_exactly_what_it_needs() {
    let lab = Lab::get().unwrap();
    let mgmt = lab.clusters()[0].clone();
    install_crds(&lab, &mgmt);
    let rendered = render(&lab, "deploy/management");
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "CustomResourceDefinition",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}")),
            "deploy/management renders no {kind}"
        );
    }
    install_rbac(&lab, &mgmt, &rendered);
    check_access(
        &lab,
        &mgmt,
        OPERATOR_SA,
        &[
            ("watch", "clusterpolicies.transition.dcnlab.ssu.ac.kr", ""),
            (
                "create",
                "checkpoints.transition.dcnlab.ssu.ac.kr",
                "default",
            ),
            (
                "delete",
                "checkpoints.transition.dcnlab.ssu.ac.kr",
                "default",
            ),
            (
                "patch",
                "transitions.transition.dcnlab.ssu.ac.kr/status",
                "default",
            ),
            ("create", "events.events.k8s.io", "default"),
            ("update", "leases.coordination.k8s.io", "transition-system"),
            ("patch", "pods", "transition-system"),
            ("get", "secrets", "default"),
            ("patch", "applications.argoproj.io", "argocd"),
        ],
        &[
            // Secrets: by name, in the policy namespaces it is granted, nothing else.
            ("list", "secrets", "default"),
            ("watch", "secrets", "default"),
            ("get", "secrets", "kube-system"),
            ("get", "secrets", "transition-system"),
            ("get", "secrets", ""),
            (
                "delete",
                "clusterpolicies.transition.dcnlab.ssu.ac.kr",
                "default",
            ),
            (
                "create",
                "customresourcedefinitions.apiextensions.k8s.io",
                "",
            ),
            ("patch", "pods", "default"),
            ("create", "pods/exec", "transition-system"),
            ("update", "leases.coordination.k8s.io", "kube-system"),
            ("create", "deployments.apps", "transition-system"),
        ],
    );
    // A forbidden request made as the operator is refused by the API server itself.
    let (ok, out) = kubectl(
        &lab,
        &mgmt,
        &["get", "secrets", "-n", "kube-system", "--as", OPERATOR_SA],
    );
    assert!(!ok && out.contains("Forbidden"), "{out}");
}

#[test]
fn the_workload_install_is_accepted_and_the_operator_and_agent_may_do_exactly_what_they_need() {
    let lab = Lab::get().unwrap();
    let cluster = "cluster1-azure";
    let rendered = render(&lab, "deploy/workload");
    for kind in ["DaemonSet", "ConfigMap", "Secret"] {
        assert!(
            rendered.contains(&format!("kind: {kind}")),
            "deploy/workload renders no {kind}"
        );
    }
    install_rbac(&lab, cluster, &rendered);
    check_access(
        &lab,
        cluster,
        OPERATOR_SA,
        &[
            ("create", "nodes/proxy", ""),
            ("get", "nodes/proxy", ""),
            ("patch", "nodes", ""),
            ("list", "nodes", ""),
            ("list", "pods", ""),
            ("list", "deployments.apps", ""),
            ("get", "statefulsets.apps", "default"),
            ("get", "leases.coordination.k8s.io", "kube-node-lease"),
            (
                "patch",
                "kustomizations.kustomize.toolkit.fluxcd.io",
                "flux-system",
            ),
            (
                "patch",
                "gitrepositories.source.toolkit.fluxcd.io",
                "flux-system",
            ),
            ("patch", "applications.argoproj.io", "argocd"),
        ],
        &[
            ("get", "secrets", ""),
            ("get", "secrets", "transition-system"),
            ("delete", "nodes", ""),
            ("delete", "pods", "default"),
            ("create", "pods", "default"),
            ("patch", "deployments.apps", "default"),
            ("get", "leases.coordination.k8s.io", "kube-system"),
            ("delete", "nodes/proxy", ""),
        ],
    );
    check_access(
        &lab,
        cluster,
        AGENT_SA,
        &[("get", "nodes", "")],
        &[
            ("list", "nodes", ""),
            ("patch", "nodes", ""),
            ("get", "secrets", "transition-system"),
            ("list", "pods", ""),
        ],
    );
    let (ok, out) = kubectl(
        &lab,
        cluster,
        &["delete", "node", "no-such-node", "--as", OPERATOR_SA],
    );
    assert!(!ok && out.contains("Forbidden"), "{out}");
}

#[test]
fn the_example_overlays_render_with_their_settings_and_images_by_digest() {
    let lab = Lab::get().unwrap();
    let management = render(&lab, "deploy/examples/management");
    assert!(
        management.contains(
            "image: registry.internal.example:5000/transition/transition-operator@sha256:"
        ),
        "{management}"
    );
    assert!(management.contains("REGISTRY_URL: registry.internal.example:5000"));
    assert!(management.contains("namespace: team-a"));
    let workload = render(&lab, "deploy/examples/workload");
    assert!(
        workload
            .contains("image: registry.internal.example:5000/transition/checkpoint-agent@sha256:"),
        "{workload}"
    );
    assert!(workload.contains("CLUSTER_NAME: cluster1-azure"));
}

#[test]
fn the_gitops_example_agent_the_secret_templates_and_the_sample_policy_are_accepted_by_the_api_server()
 {
    let lab = Lab::get().unwrap();
    let mgmt = lab.clusters()[0].clone();
    install_crds(&lab, &mgmt);
    for cluster in [mgmt.as_str(), "cluster1-azure"] {
        let (ok, out) = kubectl(&lab, cluster, &["create", "namespace", "transition-system"]);
        assert!(ok || out.contains("AlreadyExists"), "{out}");
    }
    for (cluster, file) in [
        (
            "cluster1-azure",
            "clusters/cluster1-azure/gitops/checkpoint-agent.yaml",
        ),
        // The Secret templates of the install.
        (mgmt.as_str(), "deploy/examples/secrets/management.yaml"),
        ("cluster1-azure", "deploy/examples/secrets/workload.yaml"),
        // The sample policy for this repository's layout.
        (mgmt.as_str(), "catalog/policies/clusterpolicy-sample.yaml"),
    ] {
        let path = repo_root().join(file);
        let (ok, out) = kubectl(
            &lab,
            cluster,
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
        );
        assert!(ok, "{file} rejected: {out}");
        assert!(out.contains("(server dry run)"), "{out}");
    }
}
