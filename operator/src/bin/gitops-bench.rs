//! Times "fault → commit pushed" with our GitOps writer on a warm clone cache: `--runs` failovers,
//! each pinning a new digest, against `GIT_URL` (basic auth from `GIT_USER` / `GIT_PASSWORD`).
//! Prints one line per run (milliseconds) and p50/p99. Used by `hack/bench-gitops.sh`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use transition_operator::gitops::repo::{GitConfig, GitCredentials, GitRepo};
use transition_operator::gitops::writer::{self, FailoverPlan, ImageSwap, Strategy};

#[derive(Parser, Debug)]
struct Config {
    #[arg(long, env = "GIT_URL")]
    url: String,
    #[arg(long, env = "GIT_USER")]
    user: String,
    #[arg(long, env = "GIT_PASSWORD", hide_env_values = true)]
    password: String,
    #[arg(long, env = "RUNS", default_value_t = 20)]
    runs: u32,
    /// `workload` (per-workload patch, the default strategy), `kustomize` or `in-place`.
    #[arg(long, env = "STRATEGY", default_value = "kustomize")]
    strategy: String,
    #[arg(long, env = "CACHE_DIR")]
    cache: PathBuf,
    #[arg(long, env = "PACKAGE_PATH", default_value = "catalog/bench")]
    package_path: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let c = Config::parse();
    let strategy = match c.strategy.as_str() {
        "in-place" => Strategy::InPlace,
        "workload" => Strategy::WorkloadPatch,
        _ => Strategy::Kustomize,
    };
    let repo = GitRepo::open_or_clone(GitConfig {
        url: c.url.clone(),
        branch: "main".into(),
        cache_dir: c.cache.clone(),
        credentials: Some(GitCredentials {
            username: c.user.clone(),
            password: c.password.clone(),
        }),
        author_name: "transition-operator".into(),
        author_email: "transition-operator@transition.invalid".into(),
        max_attempts: 5,
    })?;
    let mut times = Vec::new();
    let mut previous = "docker.io/library/busybox:1.36".to_owned();
    for i in 0..c.runs {
        let reference = format!(
            "127.0.0.1:5000/checkpoints/bench@sha256:{:064x}",
            u64::from(i) + 1
        );
        let plan = FailoverPlan {
            policy: "default/bench".into(),
            package: "bench".into(),
            package_path: c.package_path.clone(),
            source_cluster: "cluster1-azure".into(),
            target_cluster: "cluster2-aws".into(),
            source_dir: "clusters/cluster1-azure".into(),
            target_dir: "clusters/cluster2-aws".into(),
            images: vec![ImageSwap {
                original: previous.clone(),
                reference: reference.clone(),
                // One workload out of the 1,000, one container: what a failover of one pod pins.
                target: (strategy == Strategy::WorkloadPatch).then(|| {
                    (
                        transition_operator::gitops::edit::WorkloadRef {
                            kind: "Deployment".into(),
                            name: "app-000".into(),
                            namespace: Some("default".into()),
                        },
                        "app".into(),
                    )
                }),
            }],
            strategy,
            fence: true,
            node: "worker-1".into(),
            fault: "bench".into(),
            workloads: vec![],
        };
        let started = Instant::now();
        let edit = |root: &Path| writer::apply(root, &plan).map(|_| ());
        let out = repo.change(&writer::message(&plan), false, &edit)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(out.commit.is_some(), "run {i} pushed no commit");
        if strategy == Strategy::InPlace {
            previous = reference;
        }
        println!("run {i}: {ms:.1} ms");
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    let pick = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "ours ({}) p50 {:.1} ms p99 {:.1} ms",
        c.strategy,
        pick(0.5),
        pick(0.99)
    );
    Ok(())
}
