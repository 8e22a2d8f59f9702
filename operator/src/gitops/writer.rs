//! A failover as one Git change: the target cluster gets the package pinned to checkpoint images
//! (by default a strategic-merge patch per workload and container in the target's folder, or
//! kustomize `images:` by name, or in-place `image:` rewrites), and the source cluster is fenced
//! (the package leaves its kustomization) — in ONE commit when both live in one repository.

use std::path::{Path, PathBuf};

use super::edit::{self, EditError};

/// How the target deploys the checkpoint images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// `transition-<package>.yaml` in the target's folder: one strategic-merge patch per
    /// workload setting each checkpointed container's image by digest, listed under
    /// `patches` (`- path: transition-<package>.yaml`, kustomize ≥ 3); manifests untouched. Each image reaches
    /// exactly the workload and container it was taken from.
    #[default]
    WorkloadPatch,
    /// `images:` entries in the target's kustomization (every user of the base image gets it).
    Kustomize,
    /// Rewrite the `image:` scalars in the package's manifests, byte-preserving.
    InPlace,
}

/// One container's swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSwap {
    /// The image the source runs (`docker.io/library/busybox:1.36`).
    pub original: String,
    /// The checkpoint image by digest (`host/repo@sha256:…`).
    pub reference: String,
    /// The workload and container it was taken from (`None`: by image name only).
    pub target: Option<(edit::WorkloadRef, String)>,
}

/// The patch file of `package` in a target cluster's folder.
pub fn patch_file(package: &str) -> String {
    format!("transition-{package}.yaml")
}

/// The strategic-merge patches pinning each swap to its workload and container (pure;
/// deterministic, so re-applying writes the same bytes). `None` when no swap names a workload.
pub fn workload_patches(plan: &FailoverPlan) -> Option<String> {
    use std::collections::BTreeMap;
    // (kind, namespace, name) → [(container, image)]
    type Key = (String, String, String);
    let mut by_workload: BTreeMap<Key, Vec<(&str, &str)>> = BTreeMap::new();
    for s in &plan.images {
        if let Some((w, container)) = &s.target {
            by_workload
                .entry((
                    w.kind.clone(),
                    w.namespace.clone().unwrap_or_else(|| "default".into()),
                    w.name.clone(),
                ))
                .or_default()
                .push((container.as_str(), s.reference.as_str()));
        }
    }
    if by_workload.is_empty() {
        return None;
    }
    let mut out = format!(
        "# Written by transition-operator for package {} ({}): each checkpoint image pinned to\n\
         # exactly the workload and container it was taken from. Removing this file and its\n\
         # entry under patches goes back to the base images.\n",
        plan.package, plan.policy
    );
    for (i, ((kind, namespace, name), containers)) in by_workload.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  template:\n    spec:\n      containers:\n"
        ));
        for (container, image) in containers {
            out.push_str(&format!(
                "        - name: {container}\n          image: \"{image}\"\n"
            ));
        }
    }
    Some(out)
}

/// What to change, relative to the repository root.
#[derive(Clone, Debug)]
pub struct FailoverPlan {
    pub policy: String,
    pub package: String,
    /// The package folder, e.g. `catalog/counter`.
    pub package_path: PathBuf,
    /// The clusters the package leaves and goes to.
    pub source_cluster: String,
    pub target_cluster: String,
    /// Cluster folders holding a kustomization, e.g. `clusters/cluster1-azure` (or
    /// `clusters/cluster1-azure/counter` with a folder per package).
    pub source_dir: PathBuf,
    pub target_dir: PathBuf,
    pub images: Vec<ImageSwap>,
    pub strategy: Strategy,
    /// Take the package out of the source's desired state.
    pub fence: bool,
    pub node: String,
    pub fault: String,
    /// In-place only: restrict the rewrite to these workloads (empty: every workload of the
    /// package running `original`).
    pub workloads: Vec<edit::WorkloadRef>,
}

/// What [`apply`] did besides changing files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files that could not be read as YAML (reported and skipped; the others were processed).
    pub warnings: Vec<String>,
    pub rewritten: usize,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Applies the whole `plan` (target change + fence) to the checkout at `root`: one commit when
/// source and target live in one repository.
pub fn apply(root: &Path, plan: &FailoverPlan) -> Result<Applied, EditError> {
    let applied = apply_target(root, plan)?;
    if plan.fence {
        apply_fence(root, plan)?;
    }
    Ok(applied)
}

/// The target side only (when each cluster has its own repository: commit this first).
pub fn apply_target(root: &Path, plan: &FailoverPlan) -> Result<Applied, EditError> {
    let package_dir = root.join(&plan.package_path);
    if !package_dir.is_dir() {
        return Err(EditError::MissingPackage {
            package: plan.package.clone(),
            path: plan.package_path.display().to_string(),
        });
    }
    let mut applied = Applied::default();
    let target_folder = root.join(&plan.target_dir);
    std::fs::create_dir_all(&target_folder).map_err(|e| EditError::Write {
        path: target_folder.display().to_string(),
        reason: e.to_string(),
    })?;
    let target_k = target_folder.join("kustomization.yaml");
    let target_entry = edit::relative(&plan.target_dir, &plan.package_path)
        .display()
        .to_string();
    edit::add_resource(&target_k, &target_entry)?;
    match plan.strategy {
        Strategy::WorkloadPatch => {
            if let Some(text) = workload_patches(plan) {
                let name = patch_file(&plan.package);
                edit::write_if_changed(&root.join(&plan.target_dir).join(&name), &text)?;
                edit::add_patch(&target_k, &name)?;
            }
            // Swaps that name no workload (a status from an older operator) go by image name.
            for swap in plan.images.iter().filter(|s| s.target.is_none()) {
                let (new_name, digest) = swap
                    .reference
                    .split_once('@')
                    .unwrap_or((swap.reference.as_str(), ""));
                edit::set_image(&target_k, &swap.original, new_name, digest)?;
            }
        }
        Strategy::Kustomize => {
            for swap in &plan.images {
                let (new_name, digest) = swap
                    .reference
                    .split_once('@')
                    .unwrap_or((swap.reference.as_str(), ""));
                edit::set_image(&target_k, &swap.original, new_name, digest)?;
            }
        }
        Strategy::InPlace => {
            let mut files = Vec::new();
            yaml_files(&package_dir, &mut files);
            for file in files.iter().filter(|f| !f.ends_with("kustomization.yaml")) {
                let text = std::fs::read_to_string(file).map_err(|e| EditError::Read {
                    path: file.display().to_string(),
                    reason: e.to_string(),
                })?;
                let docs = if plan.workloads.is_empty() {
                    edit::workload_images(file, &text).map(|_| None)
                } else {
                    plan.workloads
                        .iter()
                        .try_fold(Vec::new(), |mut acc, w| {
                            acc.extend(edit::find_workload(file, &text, w)?);
                            Ok(acc)
                        })
                        .map(Some)
                };
                let docs = match docs {
                    Ok(d) => d,
                    Err(e) => {
                        applied.warnings.push(e.to_string());
                        continue;
                    }
                };
                let mut new_text = text.clone();
                for swap in &plan.images {
                    let (t, n) = match &docs {
                        None => edit::rewrite_images_in_place(
                            &new_text,
                            &swap.original,
                            &swap.reference,
                        ),
                        Some(d) => edit::rewrite_images_in_docs(
                            &new_text,
                            d,
                            &swap.original,
                            &swap.reference,
                        ),
                    };
                    new_text = t;
                    applied.rewritten += n;
                }
                if new_text != text {
                    std::fs::write(file, new_text).map_err(|e| EditError::Write {
                        path: file.display().to_string(),
                        reason: e.to_string(),
                    })?;
                }
            }
        }
    }
    Ok(applied)
}

/// The fence only: the package leaves the source cluster's kustomization, with the patch an
/// earlier move pinned it with there (a failback's old home), so the folder still builds
/// (idempotent).
pub fn apply_fence(root: &Path, plan: &FailoverPlan) -> Result<bool, EditError> {
    let source = root.join(&plan.source_dir);
    let source_k = source.join("kustomization.yaml");
    let source_entry = edit::relative(&plan.source_dir, &plan.package_path)
        .display()
        .to_string();
    let mut changed = edit::remove_resource(&source_k, &source_entry)?;
    let patch = patch_file(&plan.package);
    changed |= edit::remove_patch(&source_k, &patch)?;
    changed |= edit::remove_file(&source.join(&patch))?;
    Ok(changed)
}

/// The commit message (template: what moved, why, and the exact images).
pub fn message(plan: &FailoverPlan) -> String {
    let (source, target) = (&plan.source_cluster, &plan.target_cluster);
    let mut m = format!(
        "transition: fail over {} from {source} to {target}\n\nPolicy: {}\nPackage: {}\nFault: {}\nNode: {}\n",
        plan.package, plan.policy, plan.package, plan.fault, plan.node
    );
    for s in &plan.images {
        m.push_str(&format!("Image: {} -> {}\n", s.original, s.reference));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_policy_package_fault_node_and_digests() {
        let plan = FailoverPlan {
            policy: "default/clusterpolicy-sample".into(),
            package: "counter".into(),
            package_path: "catalog/counter".into(),
            source_cluster: "cluster1-azure".into(),
            target_cluster: "cluster2-aws".into(),
            source_dir: "clusters/cluster1-azure".into(),
            target_dir: "clusters/cluster2-aws".into(),
            images: vec![ImageSwap {
                original: "busybox:1.36".into(),
                reference: "reg/c@sha256:ab".into(),
                target: None,
            }],
            strategy: Strategy::Kustomize,
            fence: true,
            node: "worker-1".into(),
            fault: "NodeFailed: Lease stale".into(),
            workloads: vec![],
        };
        let m = message(&plan);
        for needle in [
            "counter from cluster1-azure to cluster2-aws",
            "Policy: default/clusterpolicy-sample",
            "Node: worker-1",
            "Fault: NodeFailed",
            "busybox:1.36 -> reg/c@sha256:ab",
        ] {
            assert!(m.contains(needle), "{needle} in {m}");
        }
    }
}
