//! `kubectl transition`: the command line for transition, a kubectl plugin (the binary
//! `kubectl-transition` on PATH). Every command talks to the management cluster's API with the
//! CRD types of `transition-crds`; what the operator computes (checkpoint ages, targets, dry-run
//! diffs) is read from its status, never computed again here.

pub mod checkpoint;
pub mod history;
pub mod moves;
pub mod output;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Examples shown by `--help`.
const EXAMPLES: &str = "Examples:
  kubectl transition status                      # every policy in the namespace, problems first
  kubectl transition status counter-policy -o json
  kubectl transition checkpoint counter-policy   # a checkpoint of every package now, and wait
  kubectl transition move counter-policy counter --to cluster2-aws --dry-run
  kubectl transition move counter-policy counter --to cluster2-aws
  kubectl transition failback counter-policy counter
  kubectl transition history -A
  kubectl transition completion bash > /etc/bash_completion.d/kubectl-transition

Exit codes: 0 done; 1 the operation failed (a Transition or checkpoint ended Failed);
2 bad input or nothing to act on (policy or package not found, no permission); 3 timed out.";

/// kubectl transition: protection state, checkpoints and moves of transition's ClusterPolicies.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kubectl-transition",
    bin_name = "kubectl transition",
    version,
    about,
    after_help = EXAMPLES
)]
pub struct Config {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the ClusterPolicies (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (status, history).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Namespace where the operator keeps NodeHealth.
    #[arg(
        long,
        env = "TRANSITION_OPERATOR_NAMESPACE",
        default_value = "transition-system",
        global = true
    )]
    pub operator_namespace: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// How long and whether to wait for an operation.
#[derive(clap::Args, Debug, Clone)]
pub struct Wait {
    /// Return once the request is made, without following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait before giving up (exit code 3).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

impl Wait {
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Per policy and package: where it runs and would go, the age of its newest checkpoint (the
    /// state a failover now would lose), the next run, the last Transition, source node health.
    Status {
        /// One policy (default: all).
        policy: Option<String>,
    },
    /// A checkpoint now (every package of the policy, or one), followed per container until
    /// the images are pushed.
    Checkpoint {
        policy: String,
        package: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// A planned, make-before-break move of a package to another cluster.
    Move {
        policy: String,
        package: String,
        /// The cluster to move to.
        #[arg(long)]
        to: String,
        /// Print the Git diff the move would push; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Bring a package that failed over back to the policy's source cluster (planned).
    Failback {
        policy: String,
        package: String,
        /// Print the Git diff the failback would push; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Past and running Transitions with phase timings, commits and images.
    History {
        /// One policy (default: all).
        policy: Option<String>,
    },
    /// Shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Why a command did not succeed. [`Error::exit_code`] maps each to the documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(
        "ClusterPolicy {namespace}/{name} not found (list them with: kubectl transition status -A)"
    )]
    PolicyNotFound { namespace: String, name: String },
    #[error("ClusterPolicy {policy} has no package {package} (its packages: {known})")]
    NoPackage {
        policy: String,
        package: String,
        known: String,
    },
    #[error(
        "ClusterPolicy {policy} has no Checkpoint{for_package} yet: is the package running and discovered? (kubectl transition status {name})",
        for_package = package.as_ref().map(|p| format!(" for package {p}")).unwrap_or_default(),
        name = policy.rsplit('/').next().unwrap_or_default()
    )]
    NoCheckpoints {
        policy: String,
        package: Option<String>,
    },
    #[error(
        "package {package} runs on its source cluster {cluster}: there is nothing to fail back"
    )]
    NotAway { package: String, cluster: String },
    #[error("no permission to {what}: {message} (ask for RBAC on transition.dcnlab.ssu.ac.kr)")]
    Forbidden { what: String, message: String },
    #[error("failed to {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("Transition {name} failed: {message}")]
    TransitionFailed { name: String, message: String },
    #[error("checkpoint {name} failed: {message}")]
    CheckpointFailed { name: String, message: String },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { seconds: u64, what: String },
    #[error("failed to write the output: {0}")]
    Output(String),
}

impl Error {
    /// 1: the operation failed; 2: bad input / nothing to act on; 3: timed out.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::TransitionFailed { .. } | Error::CheckpointFailed { .. } => 1,
            Error::Timeout { .. } => 3,
            _ => 2,
        }
    }
}

/// `map_err` for an API call doing `what` (403 becomes [`Error::Forbidden`]).
pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| match &source {
        kube::Error::Api(s) if s.code == 403 => Error::Forbidden {
            what,
            message: s.message.clone(),
        },
        _ => Error::Api { what, source },
    }
}

/// What every command works with.
pub struct Session {
    pub client: kube::Client,
    /// The namespace of the policies (`-n`, else the context's).
    pub namespace: String,
    pub all_namespaces: bool,
    pub operator_namespace: String,
    pub format: Format,
}

impl Session {
    pub async fn connect(config: &Config) -> Result<Session, Error> {
        let options = kube::config::KubeConfigOptions {
            context: config.context.clone(),
            ..Default::default()
        };
        let kube_config = match &config.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| kube_config.default_namespace.clone());
        let client =
            kube::Client::try_from(kube_config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
        Ok(Session {
            client,
            namespace,
            all_namespaces: config.all_namespaces,
            operator_namespace: config.operator_namespace.clone(),
            format: config.output,
        })
    }

    /// An API for a namespaced kind in the session's namespace (or all with `-A`).
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        if self.all_namespaces {
            kube::Api::all(self.client.clone())
        } else {
            kube::Api::namespaced(self.client.clone(), &self.namespace)
        }
    }

    /// The policy `name` in the session's namespace.
    pub async fn policy(&self, name: &str) -> Result<transition_crds::ClusterPolicy, Error> {
        let policies: kube::Api<transition_crds::ClusterPolicy> =
            kube::Api::namespaced(self.client.clone(), &self.namespace);
        policies
            .get_opt(name)
            .await
            .map_err(api(format!("read ClusterPolicy {}/{name}", self.namespace)))?
            .ok_or_else(|| Error::PolicyNotFound {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
            })
    }
}

/// Runs the command of `config`, writing to `out`.
pub async fn run(config: Config, out: &mut dyn std::io::Write) -> Result<(), Error> {
    if let Command::Completion { shell } = &config.command {
        let mut cmd = <Config as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "kubectl-transition", out);
        return Ok(());
    }
    let session = Session::connect(&config).await?;
    match config.command {
        Command::Status { policy } => status::run(&session, policy.as_deref(), out).await,
        Command::Checkpoint {
            policy,
            package,
            wait,
        } => checkpoint::run(&session, &policy, package.as_deref(), &wait, out).await,
        Command::Move {
            policy,
            package,
            to,
            dry_run,
            wait,
        } => {
            let request = moves::Request {
                policy,
                package,
                to: Some(to),
                dry_run,
            };
            moves::run(&session, request, &wait, out).await
        }
        Command::Failback {
            policy,
            package,
            dry_run,
            wait,
        } => {
            let request = moves::Request {
                policy,
                package,
                to: None,
                dry_run,
            };
            moves::run(&session, request, &wait, out).await
        }
        Command::History { policy } => history::run(&session, policy.as_deref(), out).await,
        Command::Completion { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_says_no_permission_and_what_to_ask_for_with_exit_code_2() {
        let denied = kube::Error::Api(
            kube::core::Status::failure(
                "transitions is forbidden: User \"bob\" cannot create",
                "Forbidden",
            )
            .with_code(403)
            .boxed(),
        );
        let e = api("create a Transition in ops")(denied);
        let text = e.to_string();
        assert!(
            text.starts_with("no permission to create a Transition in ops")
                && text.contains("cannot create")
                && text.contains("ask for RBAC"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 2);
        let failed = Error::TransitionFailed {
            name: "t".into(),
            message: "x".into(),
        };
        assert_eq!(failed.exit_code(), 1);
    }
}
