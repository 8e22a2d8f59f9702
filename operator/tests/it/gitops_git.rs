//! The GitOps writer against the lab's REAL Git smart-HTTP server (git http-backend behind
//! lighttpd, basic auth), with the repository seeded from this checkout's `catalog/` + `clusters/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use transition_operator::gitops::edit::EditError;
use transition_operator::gitops::repo::{GitConfig, GitCredentials, GitError, GitRepo};
use transition_operator::gitops::writer::{self, FailoverPlan, ImageSwap, Strategy};
use transition_testlab::{GitEndpoint, Lab, repo_root};

use crate::support::git;

const REF: &str = "127.0.0.1:5000/checkpoints/default/counter@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A fresh bare repository on the lab server, seeded with catalog/ and clusters/.
fn seeded(lab: &Lab, name: &str) -> (GitEndpoint, String, String) {
    let ep = lab.git().unwrap();
    let status = Command::new("bash")
        .arg(repo_root().join("hack/lab.sh"))
        .args(["git-repo", name])
        .env("TRANSITION_LAB_DIR", &lab.dir)
        .output()
        .unwrap();
    assert!(status.status.success());
    let url = format!("{}/{name}.git", ep.base_url);
    let authed = url.replacen(
        "http://",
        &format!("http://{}:{}@", ep.user, ep.password),
        1,
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    for d in ["catalog", "clusters"] {
        let out = Command::new("cp")
            .arg("-r")
            .arg(repo_root().join(d))
            .arg(w)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    std::fs::write(w.join("README.md"), "gitops\n").unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", "seed"]);
    git(w, &["push", "-q", &authed, "main"]);
    (ep, url, authed)
}

fn config(ep: &GitEndpoint, url: &str, cache: &Path, password: &str) -> GitConfig {
    GitConfig {
        url: url.to_owned(),
        branch: "main".into(),
        cache_dir: cache.to_path_buf(),
        credentials: Some(GitCredentials {
            username: ep.user.clone(),
            password: password.to_owned(),
        }),
        author_name: "transition-operator".into(),
        author_email: "transition-operator@transition.invalid".into(),
        max_attempts: 5,
    }
}

fn plan(strategy: Strategy, package_path: &str) -> FailoverPlan {
    FailoverPlan {
        policy: "default/clusterpolicy-sample".into(),
        package: "counter".into(),
        package_path: PathBuf::from(package_path),
        source_cluster: "cluster1-azure".into(),
        target_cluster: "cluster2-aws".into(),
        source_dir: "clusters/cluster1-azure".into(),
        target_dir: "clusters/cluster2-aws".into(),
        images: vec![ImageSwap {
            original: "docker.io/library/busybox:1.36".into(),
            reference: REF.into(),
            target: None,
        }],
        strategy,
        fence: true,
        node: "worker-1".into(),
        fault: "NodeFailed: kubelet Lease stale".into(),
        workloads: vec![],
    }
}

/// `dir` built by a current `kubectl kustomize` (kustomize 5, what Argo CD and Flux run);
/// asserts that it builds.
fn kustomize_build(lab: &Lab, dir: &Path) -> String {
    let out = Command::new(lab.tool("kubectl-current").unwrap())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} builds: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn remote_head(authed: &str) -> String {
    let out = Command::new("git")
        .args(["ls-remote", authed, "refs/heads/main"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn fresh_clone(authed: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["clone", "-q", authed, "."]);
    dir
}

#[tokio::test]
async fn a_kustomize_failover_is_one_commit_that_kubectl_kustomize_accepts_and_a_rerun_adds_nothing()
 {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("kust-{}", std::process::id()));
    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let p = plan(Strategy::Kustomize, "catalog/counter");
    let edit = |root: &Path| writer::apply(root, &p).map(|_| ());

    let dry = repo.change(&writer::message(&p), true, &edit).unwrap();
    assert!(
        dry.commit.is_none() && dry.diff.contains("sha256:1111"),
        "dry run shows the diff: {}",
        dry.diff
    );
    let before = remote_head(&authed);

    let done = repo.change(&writer::message(&p), false, &edit).unwrap();
    let sha = done.commit.unwrap();
    assert_eq!(remote_head(&authed), sha, "pushed");
    assert_ne!(sha, before);

    let clone = fresh_clone(&authed);
    let log = git(clone.path(), &["log", "-1", "--format=%an <%ae>%n%B"]);
    assert!(
        log.starts_with("transition-operator <transition-operator@transition.invalid>"),
        "{log}"
    );
    assert!(log.contains("Node: worker-1") && log.contains(REF), "{log}");
    let changed = git(clone.path(), &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(
        changed.lines().count(),
        2,
        "target change and fence in ONE commit: {changed}"
    );

    let kubectl = lab.tool("kubectl-current").unwrap();
    let target = Command::new(&kubectl)
        .arg("kustomize")
        .arg(clone.path().join("clusters/cluster2-aws"))
        .output()
        .unwrap();
    assert!(
        target.status.success(),
        "{}",
        String::from_utf8_lossy(&target.stderr)
    );
    let rendered = String::from_utf8_lossy(&target.stdout);
    assert!(
        rendered.contains(&format!("image: {REF}")),
        "the target runs the checkpoint image by digest:\n{rendered}"
    );
    let source = Command::new(&kubectl)
        .arg("kustomize")
        .arg(clone.path().join("clusters/cluster1-azure"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&source.stdout).contains("name: counter\n"),
        "the source is fenced"
    );

    let again = repo.change(&writer::message(&p), false, &edit).unwrap();
    assert!(again.commit.is_none(), "re-run: no new commit");
    assert_eq!(remote_head(&authed), sha);

    let back = repo.revert(&sha, "transition: fail back counter").unwrap();
    assert!(back.commit.is_some());
    let clone = fresh_clone(&authed);
    let k = std::fs::read_to_string(
        clone
            .path()
            .join("clusters/cluster1-azure/kustomization.yaml"),
    )
    .unwrap();
    assert!(
        k.contains("../../catalog/counter"),
        "failback restores the source: {k}"
    );
}

#[tokio::test]
async fn an_in_place_rewrite_keeps_every_other_byte_and_skips_a_malformed_file() {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("inplace-{}", std::process::id()));
    // A malformed YAML file inside the package, pushed by a person.
    let human = fresh_clone(&authed);
    std::fs::write(
        human.path().join("catalog/counter/broken.yaml"),
        "kind: Deployment\nmetadata: [oops\n",
    )
    .unwrap();
    git(human.path(), &["add", "-A"]);
    git(human.path(), &["commit", "-q", "-m", "broken file"]);
    git(human.path(), &["push", "-q", "origin", "main"]);
    let original =
        std::fs::read_to_string(human.path().join("catalog/counter/counter.yaml")).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let p = plan(Strategy::InPlace, "catalog/counter");
    let warnings = std::sync::Mutex::new(Vec::new());
    let edit = |root: &Path| {
        let applied = writer::apply(root, &p)?;
        warnings.lock().unwrap().extend(applied.warnings);
        Ok(())
    };
    repo.change(&writer::message(&p), false, &edit)
        .unwrap()
        .commit
        .unwrap();
    assert!(
        warnings
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.contains("broken.yaml")),
        "{:?}",
        warnings.lock().unwrap()
    );
    let clone = fresh_clone(&authed);
    let rewritten =
        std::fs::read_to_string(clone.path().join("catalog/counter/counter.yaml")).unwrap();
    assert_eq!(
        rewritten,
        original.replace(
            "image: docker.io/library/busybox:1.36",
            &format!("image: {REF}")
        ),
        "only the image scalar changed"
    );
}

#[tokio::test]
async fn a_human_push_racing_the_failover_is_kept_alongside_it() {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("race-{}", std::process::id()));
    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let p = plan(Strategy::Kustomize, "catalog/counter");
    let raced = AtomicBool::new(false);
    let edit = |root: &Path| -> Result<(), EditError> {
        // The first time, a person pushes between our fetch and our push.
        if !raced.swap(true, Ordering::SeqCst) {
            let human = fresh_clone(&authed);
            std::fs::write(
                human.path().join("README.md"),
                "gitops, edited by a person\n",
            )
            .unwrap();
            git(human.path(), &["commit", "-q", "-am", "human edit"]);
            git(human.path(), &["push", "-q", "origin", "main"]);
        }
        writer::apply(root, &p).map(|_| ())
    };
    let done = repo.change(&writer::message(&p), false, &edit).unwrap();
    assert!(
        done.attempts >= 2,
        "the non-fast-forward was retried ({} attempts)",
        done.attempts
    );
    let clone = fresh_clone(&authed);
    assert_eq!(
        std::fs::read_to_string(clone.path().join("README.md")).unwrap(),
        "gitops, edited by a person\n",
        "the human change is kept"
    );
    let k = std::fs::read_to_string(
        clone
            .path()
            .join("clusters/cluster2-aws/kustomization.yaml"),
    )
    .unwrap();
    assert!(k.contains("sha256:1111"), "and so is ours");
    let log = git(clone.path(), &["log", "--format=%s", "-3"]);
    assert!(
        log.lines().any(|l| l == "human edit"),
        "no force push: {log}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_error_and_a_missing_package_is_named() {
    let lab = Lab::get().unwrap();
    let (ep, url, _authed) = seeded(&lab, &format!("auth-{}", std::process::id()));
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = GitRepo::open_or_clone(config(&ep, &url, cache.path(), "not-the-password"))
        .err()
        .unwrap();
    assert!(matches!(err, GitError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no authentication replay loop"
    );

    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let p = plan(Strategy::Kustomize, "catalog/no-such-package");
    let err = repo
        .change("x", false, &|root: &Path| {
            writer::apply(root, &p).map(|_| ())
        })
        .unwrap_err();
    assert!(
        matches!(err, GitError::Edit(EditError::MissingPackage { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("catalog/no-such-package"), "{err}");
}

#[tokio::test]
async fn with_one_repository_per_cluster_the_target_and_the_fence_are_ordered_idempotent_commits() {
    let lab = Lab::get().unwrap();
    let (ep, source_url, source_authed) = seeded(&lab, &format!("src-{}", std::process::id()));
    let (_, target_url, target_authed) = seeded(&lab, &format!("dst-{}", std::process::id()));
    let cache = tempfile::tempdir().unwrap();
    let source =
        GitRepo::open_or_clone(config(&ep, &source_url, cache.path(), &ep.password)).unwrap();
    let target =
        GitRepo::open_or_clone(config(&ep, &target_url, cache.path(), &ep.password)).unwrap();
    let p = plan(Strategy::Kustomize, "catalog/counter");
    let msg = writer::message(&p);
    for round in 0..2 {
        let t = target
            .change(&msg, false, &|root: &Path| {
                writer::apply_target(root, &p).map(|_| ())
            })
            .unwrap();
        let f = source
            .change(&msg, false, &|root: &Path| {
                writer::apply_fence(root, &p).map(|_| ())
            })
            .unwrap();
        assert_eq!(
            t.commit.is_some(),
            round == 0,
            "target commit only the first time"
        );
        assert_eq!(
            f.commit.is_some(),
            round == 0,
            "fence commit only the first time"
        );
    }
    let t = fresh_clone(&target_authed);
    assert!(
        std::fs::read_to_string(t.path().join("clusters/cluster2-aws/kustomization.yaml"))
            .unwrap()
            .contains("sha256:1111")
    );
    let s = fresh_clone(&source_authed);
    assert!(
        !std::fs::read_to_string(s.path().join("clusters/cluster1-azure/kustomization.yaml"))
            .unwrap()
            .contains("catalog/counter")
    );
}

/// Two Deployments of one package share a base image; each restores its OWN pod's checkpoint.
/// Rendered with a current `kubectl kustomize` (kustomize 5, what Argo CD and Flux run), not with
/// our own reader.
#[test]
fn two_workloads_sharing_an_image_each_get_their_own_checkpoint_in_the_rendered_target() {
    let lab = Lab::get().unwrap();
    let kubectl = lab.tool("kubectl-current").unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("catalog/pair")).unwrap();
    std::fs::create_dir_all(r.join("clusters/cluster2-aws")).unwrap();
    std::fs::create_dir_all(r.join("clusters/cluster1-azure")).unwrap();
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - name: app\n          image: docker.io/library/busybox:1.36\n        - name: sidecar\n          image: docker.io/library/busybox:1.36\n"
        )
    };
    std::fs::write(r.join("catalog/pair/a.yaml"), deployment("a")).unwrap();
    std::fs::write(r.join("catalog/pair/b.yaml"), deployment("b")).unwrap();
    std::fs::write(
        r.join("catalog/pair/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml, b.yaml]\n",
    )
    .unwrap();
    for c in ["cluster1-azure", "cluster2-aws"] {
        std::fs::write(
            r.join(format!("clusters/{c}/kustomization.yaml")),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
        )
        .unwrap();
    }
    let swap = |workload: &str, digit: char| ImageSwap {
        original: "docker.io/library/busybox:1.36".into(),
        reference: format!(
            "127.0.0.1:5000/checkpoints/default/{workload}-app@sha256:{}",
            digit.to_string().repeat(64)
        ),
        target: Some((
            transition_operator::gitops::edit::WorkloadRef {
                kind: "Deployment".into(),
                name: workload.into(),
                namespace: Some("default".into()),
            },
            "app".into(),
        )),
    };
    let mut p = plan(Strategy::WorkloadPatch, "catalog/pair");
    p.package = "pair".into();
    p.images = vec![swap("a", 'a'), swap("b", 'b')];
    writer::apply(r, &p).unwrap();
    let again =
        std::fs::read_to_string(r.join("clusters/cluster2-aws/transition-pair.yaml")).unwrap();
    writer::apply(r, &p).unwrap();
    assert_eq!(
        std::fs::read_to_string(r.join("clusters/cluster2-aws/transition-pair.yaml")).unwrap(),
        again,
        "re-applying writes the same bytes"
    );
    let out = Command::new(&kubectl)
        .args(["kustomize", "clusters/cluster2-aws"])
        .current_dir(r)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let doc = |name: &str| {
        *docs
            .iter()
            .find(|d| d.contains(&format!("name: {name}\n")))
            .unwrap()
    };
    for (name, digit) in [("a", 'a'), ("b", 'b')] {
        let d = doc(name);
        let own = format!("sha256:{}", digit.to_string().repeat(64));
        assert!(d.contains(&own), "{name} runs its own checkpoint: {d}");
        let other = if digit == 'a' { 'b' } else { 'a' };
        assert!(
            !d.contains(&format!("sha256:{}", other.to_string().repeat(64))),
            "{name} never gets the other pod's memory: {d}"
        );
        assert!(
            d.contains("image: docker.io/library/busybox:1.36"),
            "the sidecar sharing the base image keeps it: {d}"
        );
    }
}

#[tokio::test]
async fn a_failback_pins_the_home_to_the_fresh_checkpoint_and_leaves_the_old_home_building() {
    use transition_operator::gitops::edit::WorkloadRef;
    const FRESH: &str = "127.0.0.1:5000/checkpoints/default/counter@sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("failback-{}", std::process::id()));
    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let counter = WorkloadRef {
        kind: "Deployment".into(),
        name: "counter".into(),
        namespace: Some("default".into()),
    };
    // The failover: cluster2-aws pinned by a workload patch, cluster1-azure fenced.
    let mut out = plan(Strategy::WorkloadPatch, "catalog/counter");
    out.images[0].target = Some((counter.clone(), "counter".into()));
    repo.change(&writer::message(&out), false, &|root| {
        writer::apply(root, &out).map(|_| ())
    })
    .unwrap();
    // The failback (planned): home pinned to the fresh checkpoint taken on cluster2-aws, then
    // cluster2-aws fenced — its kustomization and patch file both lose the package.
    let mut back = out.clone();
    back.source_dir = "clusters/cluster2-aws".into();
    back.target_dir = "clusters/cluster1-azure".into();
    back.images[0].reference = FRESH.into();
    back.fence = false;
    repo.change("transition: fail back counter", false, &|root| {
        writer::apply_target(root, &back).map(|_| ())
    })
    .unwrap();
    repo.change(
        "transition: fence counter on cluster2-aws",
        false,
        &|root| writer::apply_fence(root, &back).map(|_| ()),
    )
    .unwrap();
    let clone = fresh_clone(&authed);
    assert!(
        !clone
            .path()
            .join("clusters/cluster2-aws/transition-counter.yaml")
            .exists(),
        "the old home's pin is gone"
    );
    let render = |dir: &str| kustomize_build(&lab, &clone.path().join(dir));
    let home = render("clusters/cluster1-azure");
    assert!(
        home.contains(&format!("image: {FRESH}")),
        "home runs the fresh checkpoint:\n{home}"
    );
    let old = render("clusters/cluster2-aws");
    assert!(!old.contains("name: counter\n"), "old home fenced:\n{old}");
}

/// The Git contract's list keys: the writer lists the package under `resources:` and its patch
/// under `patches:` (not the deprecated `bases:`/`patchesStrategicMerge`), and still reads a
/// source that lists its packages under `bases:`. Rendered with a current `kubectl kustomize`
/// (kustomize 5, what Argo CD and Flux run) from a clone of the lab's real Git server.
#[tokio::test]
async fn the_target_gets_resources_and_patches_and_a_source_listing_bases_is_still_fenced() {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("lists-{}", std::process::id()));
    let setup = fresh_clone(&authed);
    std::fs::write(
        setup.path().join("clusters/cluster1-azure/kustomization.yaml"),
        "# written before resources: took over\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases:\n  - ../../catalog/counter\n",
    )
    .unwrap();
    git(setup.path(), &["commit", "-qam", "source lists bases"]);
    git(setup.path(), &["push", "-q", "origin", "main"]);

    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let mut p = plan(Strategy::WorkloadPatch, "catalog/counter");
    p.images[0].target = Some((
        transition_operator::gitops::edit::WorkloadRef {
            kind: "Deployment".into(),
            name: "counter".into(),
            namespace: Some("default".into()),
        },
        "counter".into(),
    ));
    let edit = |root: &Path| writer::apply(root, &p).map(|_| ());
    assert!(
        repo.change(&writer::message(&p), false, &edit)
            .unwrap()
            .commit
            .is_some()
    );

    let clone = fresh_clone(&authed);
    let read = |f: &str| std::fs::read_to_string(clone.path().join(f)).unwrap();
    let target = read("clusters/cluster2-aws/kustomization.yaml");
    assert!(
        target.contains("resources: [../../catalog/counter]")
            && target.contains("patches:\n- path: transition-counter.yaml")
            && !target.contains("bases")
            && !target.contains("patchesStrategicMerge"),
        "{target}"
    );
    let source = read("clusters/cluster1-azure/kustomization.yaml");
    assert_eq!(
        source,
        "# written before resources: took over\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
        "fenced on the text, the comment kept; an emptied bases: becomes resources: [] (kustomize 5 refuses a kustomization with only an empty bases:)"
    );
    let render = |dir: &str| kustomize_build(&lab, &clone.path().join(dir));
    let rendered = render("clusters/cluster2-aws");
    assert!(
        rendered.contains(&format!("image: {REF}")),
        "the target runs the checkpoint image:\n{rendered}"
    );
    assert!(!render("clusters/cluster1-azure").contains("name: counter\n"));
}

/// Argo CD app-of-apps with one Application per package and cluster
/// (`--git-folder-per-package`): each Application deploys `clusters/<cluster>/<package>/`; the
/// failover creates the target's folder and empties the source's, in one commit on the lab's
/// real Git server, and both folders build with a current `kubectl kustomize`.
#[tokio::test]
async fn with_a_folder_per_package_the_target_folder_is_created_and_the_source_folder_emptied() {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("per-package-{}", std::process::id()));
    let setup = fresh_clone(&authed);
    let source_folder = setup.path().join("clusters/cluster1-azure/counter");
    std::fs::create_dir_all(&source_folder).unwrap();
    std::fs::write(
        source_folder.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../catalog/counter\n",
    )
    .unwrap();
    git(setup.path(), &["add", "-A"]);
    git(setup.path(), &["commit", "-qm", "counter's own folder"]);
    git(setup.path(), &["push", "-q", "origin", "main"]);

    let cache = tempfile::tempdir().unwrap();
    let repo = GitRepo::open_or_clone(config(&ep, &url, cache.path(), &ep.password)).unwrap();
    let mut p = plan(Strategy::Kustomize, "catalog/counter");
    p.source_dir = "clusters/cluster1-azure/counter".into();
    p.target_dir = "clusters/cluster2-aws/counter".into();
    let edit = |root: &Path| writer::apply(root, &p).map(|_| ());
    let done = repo.change(&writer::message(&p), false, &edit).unwrap();
    assert!(done.commit.is_some());
    assert!(
        writer::message(&p).contains("counter from cluster1-azure to cluster2-aws"),
        "the message names clusters, not folders"
    );

    let clone = fresh_clone(&authed);
    let render = |dir: &str| kustomize_build(&lab, &clone.path().join(dir));
    let target = render("clusters/cluster2-aws/counter");
    assert!(target.contains(&format!("image: {REF}")), "{target}");
    let source = render("clusters/cluster1-azure/counter");
    assert!(!source.contains("name: counter\n"), "fenced: {source}");
    let cluster_level = std::fs::read_to_string(
        clone
            .path()
            .join("clusters/cluster2-aws/kustomization.yaml"),
    )
    .unwrap();
    assert!(
        !cluster_level.contains("catalog/counter"),
        "the cluster-level kustomization is left alone: {cluster_level}"
    );
}

/// `--git-branch production --git-clusters-dir deploy/envs` against the lab's real Git server:
/// the failover commit lands on `production` only, in the configured folders, and `main` is left
/// as it was.
#[tokio::test]
async fn a_configured_branch_and_cluster_folder_get_the_commit_and_main_is_untouched() {
    let lab = Lab::get().unwrap();
    let (ep, url, authed) = seeded(&lab, &format!("branch-{}", std::process::id()));
    let main_before = remote_head(&authed);
    let setup = fresh_clone(&authed);
    let w = setup.path();
    git(w, &["checkout", "-q", "-b", "production"]);
    std::fs::create_dir_all(w.join("deploy")).unwrap();
    git(w, &["mv", "clusters", "deploy/envs"]);
    let k = w.join("deploy/envs/cluster1-azure/kustomization.yaml");
    let text = std::fs::read_to_string(&k)
        .unwrap()
        .replace("../../catalog", "../../../catalog");
    std::fs::write(&k, text).unwrap();
    git(w, &["commit", "-qam", "production layout"]);
    git(w, &["push", "-q", "origin", "production"]);

    let cache = tempfile::tempdir().unwrap();
    let mut cfg = config(&ep, &url, cache.path(), &ep.password);
    cfg.branch = "production".into();
    let repo = GitRepo::open_or_clone(cfg).unwrap();
    let mut p = plan(Strategy::Kustomize, "catalog/counter");
    p.source_dir = "deploy/envs/cluster1-azure".into();
    p.target_dir = "deploy/envs/cluster2-aws".into();
    let edit = |root: &Path| writer::apply(root, &p).map(|_| ());
    let sha = repo
        .change(&writer::message(&p), false, &edit)
        .unwrap()
        .commit
        .unwrap();

    assert_eq!(remote_head(&authed), main_before, "main is untouched");
    let ls = Command::new("git")
        .args(["ls-remote", &authed, "refs/heads/production"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ls.stdout).starts_with(&sha),
        "production has the commit"
    );
    let clone = fresh_clone(&authed);
    git(clone.path(), &["checkout", "-q", "production"]);
    let target = kustomize_build(&lab, &clone.path().join("deploy/envs/cluster2-aws"));
    assert!(
        target.contains(REF),
        "the target folder builds with the checkpoint image: {target}"
    );
    let source = std::fs::read_to_string(
        clone
            .path()
            .join("deploy/envs/cluster1-azure/kustomization.yaml"),
    )
    .unwrap();
    assert!(!source.contains("catalog/counter"), "fenced: {source}");
}
