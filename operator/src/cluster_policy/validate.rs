//! Pure ClusterPolicy logic (no client): validate a spec beyond what the CRD schema can say,
//! choose the failover target, and build the status. Unit-tested from inline YAML.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use transition_crds::cluster_policy::{
    BackupType, ClusterPolicySpec, ClusterPolicyStatus, PackageSelector, PackageStatus,
    PackageType, RepoType, ScheduleStatus, SelectMode, TransitionMode,
};
use transition_crds::conditions::{self, Status};

use crate::checkpoint::schedule::{Schedule, next_run, parse_cron};

/// One problem in a spec, with the path of the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// `text` with its control characters escaped (`\u{1b}`): a reason stays one printable line
/// even when a parser quotes what it could not read (croner does, verbatim).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// A package the policy protects, with its parsed schedules.
#[derive(Clone, Debug)]
pub struct ProtectedPackage<'a> {
    pub selector: &'a PackageSelector,
    /// `(schedule name, cron)`; `None` for `Manual` entries.
    pub schedules: Vec<(&'a str, Option<Schedule>)>,
}

/// A spec that passed validation.
#[derive(Clone, Debug)]
pub struct ValidPolicy<'a> {
    pub packages: Vec<ProtectedPackage<'a>>,
    /// The cluster a failover would go to now (`None` when `transitionMode: None`).
    pub target: Option<&'a str>,
}

/// Whether a package path is a plain relative path inside the repository.
pub fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|seg| seg != ".." && seg != ".")
}

/// Whether a name can be one segment of a path in the repository — a cluster's folder
/// (`clusters/<name>`), a package's folder or patch file (`transition-<name>.yaml`) — and be shown
/// as it is: 1-253 characters, no `/`, `\`, control characters, not `.` or `..`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Why [`is_safe_name`] refused `name`.
fn unsafe_name(field: String, name: &str) -> SpecError {
    err(
        field,
        format!(
            "{name:?} cannot name a folder of the repository (1-253 characters, no `/`, `\\`, `..` or control characters)"
        ),
    )
}

/// The target a failover chooses: the preferred cluster with the highest weight that is neither
/// avoided nor the source itself; equal weights go to the alphabetically first name, so the choice
/// never depends on list order (the Go original was lowest-wins in one place and highest-wins in
/// another).
pub fn choose_target(spec: &ClusterPolicySpec) -> Option<&str> {
    choose_target_excluding(spec, &[])
}

/// [`choose_target`] without the clusters in `unhealthy` (e.g. every node silent).
pub fn choose_target_excluding<'a>(
    spec: &'a ClusterPolicySpec,
    unhealthy: &[String],
) -> Option<&'a str> {
    let tcp = spec.target_cluster_policy.as_ref()?;
    let source = spec.cluster_selector.name.as_str();
    let mut best: Option<(&str, i32)> = None;
    for c in &tcp.prefer_clusters {
        if c.name == source
            || tcp.avoid_clusters.iter().any(|a| a.name == c.name)
            || unhealthy.contains(&c.name)
        {
            continue;
        }
        if best.is_none_or(|(name, w)| c.weight > w || (c.weight == w && c.name.as_str() < name)) {
            best = Some((c.name.as_str(), c.weight));
        }
    }
    best.map(|(name, _)| name)
}

/// The packages the policy protects: in `Specific` mode the listed ones not `selected: false`;
/// in `All` mode every listed one (annotated packages discovered in the source cluster are added
/// by the controller that reads it).
pub fn selected_packages(spec: &ClusterPolicySpec) -> impl Iterator<Item = &PackageSelector> {
    spec.package_selectors
        .iter()
        .filter(move |p| spec.select_mode == SelectMode::All || p.selected != Some(false))
}

/// The package's schedules, parsed (`None` cron for `Manual` entries); problems go to `errors`.
fn parse_schedules<'a>(
    p: &'a PackageSelector,
    at: &str,
    errors: &mut Vec<SpecError>,
) -> Vec<(&'a str, Option<Schedule>)> {
    let mut schedules = Vec::new();
    for (j, b) in p.backup_information.iter().enumerate() {
        let bat = format!("{at}.backupInformation[{j}].schedulePeriod");
        if b.schedule_period.is_some() && b.interval_seconds.is_some() {
            errors.push(err(
                format!("{at}.backupInformation[{j}]"),
                "sets both schedulePeriod and intervalSeconds: set one",
            ));
            continue;
        }
        match (b.backup_type, b.schedule().as_deref()) {
            (BackupType::Schedule, None) => errors.push(err(
                bat,
                "is required when backupType is Schedule (or set intervalSeconds)",
            )),
            (BackupType::Schedule, Some(expr)) => match parse_cron(expr) {
                Ok(cron) => schedules.push((b.name.as_str(), Some(cron))),
                Err(e) => errors.push(err(bat, printable(&e.to_string()))),
            },
            (BackupType::Manual, _) => schedules.push((b.name.as_str(), None)),
        }
    }
    schedules
}

/// Checks what the CRD schema cannot (apiserver 1.20 has no CEL rules): cron syntax, cross-field
/// rules, path safety, a reachable target. Returns every problem, not just the first.
pub fn validate(spec: &ClusterPolicySpec) -> Result<ValidPolicy<'_>, Vec<SpecError>> {
    let mut errors = Vec::new();
    if !is_safe_name(&spec.cluster_selector.name) {
        errors.push(unsafe_name(
            "spec.clusterSelector.name".into(),
            &spec.cluster_selector.name,
        ));
    }
    if spec.cluster_selector.repo_type != RepoType::Git {
        errors.push(err(
            "spec.clusterSelector.repoType",
            "only `git` repositories can be written for a failover",
        ));
    }
    // Accepted by the schema (the Go original's fields) but not something this operator does:
    // refused with the reason rather than silently ignored.
    if spec
        .package_retention_policy
        .as_ref()
        .is_some_and(|r| r.retain_on_source)
    {
        errors.push(err(
            "spec.packageRetentionPolicy.retainOnSource",
            "not supported: a failover fences the source by removing the package from its \
             kustomization (a copy kept there could run again when the node returns); remove the field",
        ));
    }
    for (i, c) in spec
        .target_cluster_policy
        .iter()
        .flat_map(|t| &t.prefer_clusters)
        .enumerate()
    {
        if !is_safe_name(&c.name) {
            errors.push(unsafe_name(
                format!("spec.targetClusterPolicy.preferClusters[{i}].name"),
                &c.name,
            ));
        }
        if c.repo_type != RepoType::Git {
            errors.push(err(
                format!("spec.targetClusterPolicy.preferClusters[{i}].repoType"),
                "only `git` repositories can be written for a failover",
            ));
        }
    }
    if spec.select_mode == SelectMode::Specific && spec.package_selectors.is_empty() {
        errors.push(err(
            "spec.packageSelectors",
            "selectMode Specific needs at least one package selector",
        ));
    }
    let mut packages = Vec::new();
    for (i, p) in spec.package_selectors.iter().enumerate() {
        let at = format!("spec.packageSelectors[{i}]");
        if !is_safe_name(&p.name) {
            errors.push(unsafe_name(format!("{at}.name"), &p.name));
        }
        if spec.package_selectors[..i].iter().any(|q| q.name == p.name) {
            errors.push(err(
                format!("{at}.name"),
                format!("duplicate package name {:?}", p.name),
            ));
        }
        if !is_safe_relative_path(&p.package_path) {
            errors.push(err(
                format!("{at}.packagePath"),
                format!(
                    "{:?} must be a relative path inside the repository (no `..`, no leading `/`)",
                    p.package_path
                ),
            ));
        }
        if p.live_state_package && p.package_type != PackageType::Stateful {
            errors.push(err(
                format!("{at}.liveStatePackage"),
                "live-state checkpointing needs packageType Stateful",
            ));
        }
        let schedules = parse_schedules(p, &at, &mut errors);
        if spec.select_mode == SelectMode::All || p.selected != Some(false) {
            packages.push(ProtectedPackage {
                selector: p,
                schedules,
            });
        }
    }
    let mode = spec.transition_mode.unwrap_or_default();
    let target = choose_target(spec);
    if mode != TransitionMode::None && target.is_none() {
        let has_candidates = spec
            .target_cluster_policy
            .as_ref()
            .is_some_and(|t| !t.prefer_clusters.is_empty());
        let reason = if has_candidates {
            "every preferred cluster is avoided or is the source cluster"
        } else {
            "no target cluster to fail over to (list one, or set transitionMode: None for checkpoints only)"
        };
        errors.push(err("spec.targetClusterPolicy.preferClusters", reason));
    }
    if errors.is_empty() {
        Ok(ValidPolicy {
            packages,
            target: if mode == TransitionMode::None {
                None
            } else {
                target
            },
        })
    } else {
        Err(errors)
    }
}

/// What a reconcile decided: the status to write and when to look again.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub status: ClusterPolicyStatus,
    pub errors: Vec<SpecError>,
    /// Time until the next schedule fires (the status shows `nextRun`), if any.
    pub wake_after: Option<Duration>,
}

/// Builds the status for `spec` at `now`, carrying over what other controllers recorded in `old`
/// (transition history, last checkpoints).
pub fn evaluate(
    spec: &ClusterPolicySpec,
    old: Option<&ClusterPolicyStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Evaluation {
    let mut status = old.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.source_cluster = Some(spec.cluster_selector.name.clone());
    match validate(spec) {
        Ok(valid) => protected(spec, &valid, status, generation, now),
        Err(errors) => refused(status, errors, generation, now),
    }
}

/// The status of a valid policy: its packages with their schedules, the target, Ready.
fn protected(
    spec: &ClusterPolicySpec,
    valid: &ValidPolicy<'_>,
    mut status: ClusterPolicyStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> Evaluation {
    let mut wake: Option<Timestamp> = None;
    let packages: Vec<PackageStatus> = valid
        .packages
        .iter()
        .map(|p| {
            let previous = status.packages.iter().find(|s| s.name == p.selector.name);
            let schedules = p
                .schedules
                .iter()
                .zip(&p.selector.backup_information)
                .map(|((name, cron), info)| {
                    let next = cron.as_ref().and_then(|c| next_run(c, now));
                    if let Some(n) = next {
                        wake = Some(wake.map_or(n, |w| w.min(n)));
                    }
                    ScheduleStatus {
                        name: (*name).to_owned(),
                        backup_type: info.backup_type,
                        schedule_period: info.schedule(),
                        next_run: next.map(Time),
                    }
                })
                .collect();
            PackageStatus {
                name: p.selector.name.clone(),
                package_type: p.selector.package_type,
                live_state: p.selector.live_state_package,
                package_path: Some(p.selector.package_path.clone()),
                schedules,
                last_checkpoint_time: previous.and_then(|s| s.last_checkpoint_time.clone()),
                last_checkpoint_image: previous.and_then(|s| s.last_checkpoint_image.clone()),
                workloads: previous.map(|s| s.workloads.clone()).unwrap_or_default(),
                current_cluster: previous.and_then(|s| s.current_cluster.clone()),
                target_cluster: previous.and_then(|s| s.target_cluster.clone()),
            }
        })
        .collect();
    let count = packages.len();
    status.protected_packages = Some(i32::try_from(count).unwrap_or(i32::MAX));
    status.packages = packages;
    status.target_cluster = valid.target.map(str::to_owned);
    conditions::set(
        &mut status.conditions,
        conditions::SPEC_VALID,
        Status::True,
        "Valid",
        "spec passed validation",
        generation,
        now,
    );
    let target = valid.target.unwrap_or("none (transitionMode: None)");
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::True,
        "Protected",
        format!(
            "{count} package(s) of {} protected; failover target {target}",
            spec.cluster_selector.name
        ),
        generation,
        now,
    );
    let wake_after = wake.map(|w| {
        let ms = (w.as_millisecond() - now.as_millisecond()).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    });
    Evaluation {
        status,
        errors: Vec::new(),
        wake_after,
    }
}

/// The status of a policy that failed validation: every problem in SpecValid and Ready.
fn refused(
    mut status: ClusterPolicyStatus,
    errors: Vec<SpecError>,
    generation: Option<i64>,
    now: Timestamp,
) -> Evaluation {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    conditions::set(
        &mut status.conditions,
        conditions::SPEC_VALID,
        Status::False,
        "InvalidSpec",
        &message,
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::False,
        "InvalidSpec",
        &message,
        generation,
        now,
    );
    status.protected_packages = Some(0);
    status.target_cluster = None;
    Evaluation {
        status,
        errors,
        wake_after: None,
    }
}

#[cfg(test)]
pub(crate) mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use transition_crds::ClusterPolicy;

    fn spec(yaml: &str) -> ClusterPolicySpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// A policy protecting one live-state package, `app`, whose only backup entry is `entry`.
    fn with_backup_entry(entry: &str) -> ClusterPolicySpec {
        spec(&format!(
            r#"
clusterSelector: {{name: src, repo: http://g/src.git}}
selectMode: Specific
packageSelectors:
  - name: app
    packagePath: catalog/app
    packageType: Stateful
    liveStatePackage: true
    backupInformation:
      - {entry}
targetClusterPolicy: {{preferClusters: [{{name: dst, weight: 1}}]}}
"#
        ))
    }

    const SEED: &str = include_str!("../../../catalog/policies/seed/clusterpolicy-sample.yaml");

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_shipped_sample_policy_is_valid_and_points_at_package_folders_of_this_repository() {
        const SAMPLE: &str = include_str!("../../../catalog/policies/clusterpolicy-sample.yaml");
        let policy: ClusterPolicy = serde_saphyr::from_str(SAMPLE).unwrap();
        assert!(validate(&policy.spec).is_ok());
        let root = transition_runtime::flagdoc::repo_file(env!("CARGO_MANIFEST_DIR"), "");
        for p in &policy.spec.package_selectors {
            assert!(
                root.join(&p.package_path)
                    .join("kustomization.yaml")
                    .is_file(),
                "{} is a package folder of catalog/",
                p.package_path
            );
        }
    }

    #[test]
    fn fields_this_operator_does_not_carry_out_are_refused_with_the_reason() {
        let base = r#"
clusterSelector: {name: c1, repo: "http://g/r.git", repoType: git}
selectMode: Specific
packageSelectors: [{name: counter, packagePath: catalog/counter, packageType: Stateful}]
targetClusterPolicy:
  preferClusters: [{name: c2, repoType: helm, weight: 1}, {name: c3, repoType: git, weight: 1}]
packageRetentionPolicy: {retainOnSource: true}
"#;
        let errors = validate(&spec(base)).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.starts_with("spec.packageRetentionPolicy.retainOnSource: not supported")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|e| e
                .starts_with("spec.targetClusterPolicy.preferClusters[0].repoType: only `git`")),
            "{text:?}"
        );
        let fine = base
            .replace("repoType: helm", "repoType: git")
            .replace("retainOnSource: true", "deleteAfterTransition: true");
        assert!(
            validate(&spec(&fine)).is_ok(),
            "deleteAfterTransition is what the fence does"
        );
    }

    #[test]
    fn the_seed_policy_is_valid_and_protects_video_with_cluster2_as_target() {
        let policy: ClusterPolicy = serde_saphyr::from_str(SEED).unwrap();
        let valid = validate(&policy.spec).unwrap();
        assert_eq!(valid.packages.len(), 1);
        assert_eq!(valid.packages[0].selector.name, "video");
        assert_eq!(valid.target, Some("cluster2-aws"));
    }

    #[test]
    fn the_seed_schedule_fires_next_on_the_following_three_minute_boundary() {
        let policy: ClusterPolicy = serde_saphyr::from_str(SEED).unwrap();
        let eval = evaluate(&policy.spec, None, Some(1), at("2026-11-21T10:04:30Z"));
        let sched = &eval.status.packages[0].schedules[0];
        assert_eq!(sched.next_run, Some(Time(at("2026-11-21T10:06:00Z"))));
        assert_eq!(eval.wake_after, Some(Duration::from_secs(90)));
        assert!(conditions::is_true(
            &eval.status.conditions,
            conditions::READY
        ));
        assert_eq!(eval.status.protected_packages, Some(1));
    }

    #[test]
    fn an_interval_schedule_shows_its_every_form_and_its_next_slot() {
        let s = with_backup_entry("{name: fast, backupType: Schedule, intervalSeconds: 10}");
        let eval = evaluate(&s, None, Some(1), at("2026-11-21T10:04:33Z"));
        let sched = &eval.status.packages[0].schedules[0];
        assert_eq!(sched.schedule_period.as_deref(), Some("@every 10s"));
        assert_eq!(sched.next_run, Some(Time(at("2026-11-21T10:04:40Z"))));
        assert_eq!(eval.wake_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_entry_with_both_a_cron_and_an_interval_is_refused_naming_it() {
        let s = with_backup_entry(
            r#"{name: both, backupType: Schedule, schedulePeriod: "*/3 * * * *", intervalSeconds: 10}"#,
        );
        let errors = validate(&s).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].field,
            "spec.packageSelectors[0].backupInformation[0]"
        );
        assert!(errors[0].reason.contains("set one"), "{}", errors[0].reason);
    }

    #[test]
    fn the_highest_weight_wins_and_avoided_or_source_clusters_are_skipped() {
        let s = spec(
            r#"
clusterSelector: {name: src, repo: http://g/src.git}
targetClusterPolicy:
  preferClusters: [{name: a, weight: 10}, {name: b, weight: 90}, {name: src, weight: 100}, {name: c, weight: 95}]
  avoidClusters: [{name: c}]
"#,
        );
        assert_eq!(choose_target(&s), Some("b"));
    }

    #[test]
    fn equal_weights_go_to_the_alphabetically_first_name_whatever_the_order() {
        for list in [
            "[{name: y, weight: 5}, {name: x, weight: 5}]",
            "[{name: x, weight: 5}, {name: y, weight: 5}]",
        ] {
            let s = spec(&format!(
                "clusterSelector: {{name: s, repo: r}}\ntargetClusterPolicy: {{preferClusters: {list}}}"
            ));
            assert_eq!(choose_target(&s), Some("x"), "{list}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let s = spec(
            r#"
clusterSelector: {name: src, repo: http://g/src.git}
selectMode: Specific
packageSelectors:
  - name: video
    packagePath: ../outside
    packageType: Stateless
    liveStatePackage: true
    backupInformation:
      - {name: nightly, backupType: Schedule, schedulePeriod: "61 * * * *"}
      - {name: missing, backupType: Schedule}
targetClusterPolicy: {preferClusters: [{name: dst, weight: 1}], avoidClusters: [{name: dst}]}
"#,
        );
        let errors = validate(&s).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.packageSelectors[0].packagePath",
                "spec.packageSelectors[0].liveStatePackage",
                "spec.packageSelectors[0].backupInformation[0].schedulePeriod",
                "spec.packageSelectors[0].backupInformation[1].schedulePeriod",
                "spec.targetClusterPolicy.preferClusters",
            ]
        );
    }

    #[test]
    fn an_invalid_spec_makes_ready_false_and_keeps_history() {
        let mut old = ClusterPolicyStatus::default();
        old.record_transition(transition_crds::cluster_policy::TransitionedPackage {
            package_selectors: vec![],
            last_transition_time: None,
            package_transition_condition: None,
            package_transition_message: Some("earlier".into()),
            transition_ref: None,
        });
        let s = spec("clusterSelector: {name: s, repo: r}\nselectMode: Specific\n");
        let eval = evaluate(&s, Some(&old), Some(3), at("2026-01-01T00:00:00Z"));
        assert!(!conditions::is_true(
            &eval.status.conditions,
            conditions::READY
        ));
        let ready = conditions::find(&eval.status.conditions, conditions::READY).unwrap();
        assert!(
            ready.message.contains("spec.packageSelectors"),
            "{}",
            ready.message
        );
        assert_eq!(
            eval.status.transitioned_packages.len(),
            1,
            "history survives"
        );
        assert_eq!(eval.status.observed_generation, Some(3));
    }

    #[test]
    fn re_evaluating_an_unchanged_policy_gives_an_identical_status() {
        let policy: ClusterPolicy = serde_saphyr::from_str(SEED).unwrap();
        let first = evaluate(&policy.spec, None, Some(1), at("2026-11-21T10:04:30Z"));
        let second = evaluate(
            &policy.spec,
            Some(&first.status),
            Some(1),
            at("2026-11-21T10:04:40Z"),
        );
        assert_eq!(
            first.status, second.status,
            "no status churn between reconciles"
        );
    }

    #[test]
    fn transition_mode_none_needs_no_target() {
        let s = spec("clusterSelector: {name: s, repo: r}\ntransitionMode: None\n");
        let valid = validate(&s).unwrap();
        assert_eq!(valid.target, None);
    }
}
