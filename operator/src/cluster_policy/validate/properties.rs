//! Property tests of ClusterPolicy validation: any spec the API server could hand us (random
//! strings, numbers, nesting, wrong types) deserialises or not without a panic, and validating
//! and evaluating it never panics; every problem names its field in one printable line.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::*;

/// A string strategy for `pattern`, compiled once (a `&str` strategy compiles its regex anew for
/// every case, which dominates the run time in a debug build).
pub(crate) fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

/// Names as people write them; they collide often (several fields draw from them).
const NAMES: [&str; 7] = ["c1", "c2", "c3", "src", "video", "C1", "ü"];

/// Names that break paths or terminals.
const HOSTILE_NAMES: [&str; 9] = [
    "",
    "../x",
    "/abs",
    "a/b",
    ".",
    "..",
    "a\0b",
    "\u{1b}[31mred",
    "a\\b",
];

/// Cron expressions: valid, out of range, never firing, unsupported, garbage.
const CRONS: [&str; 16] = [
    "*/3 * * * *",
    "0 0 * * *",
    "61 * * * *",
    "@hourly",
    "@reboot",
    "",
    "* * * * * *",
    "\u{1}\n",
    "0 0 31 2 *",
    "0 0 29 2 *",
    "1-70/0 * * * *",
    "* * * * * * *",
    "0 0 L * *",
    "0 0 * * 5#3",
    "0 0 ? * MON-FRI",
    "\u{1b}[2J * * * *",
];

/// Any JSON value: every scalar type and shallow nesting.
pub(crate) fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        re(".{0,12}").prop_map(Value::String),
    ];
    // Built outside the closure: a recursive strategy calls it for every case.
    let key = re(".{0,6}").boxed();
    leaf.prop_recursive(2, 12, 3, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            vec((key.clone(), inner), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Mostly the field's own kind of value, rarely anything at all: a spec holds up to some 60
/// fields, and one value of the wrong type makes the whole spec fail to deserialise.
pub(crate) fn or_any(typed: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![150 => typed, 1 => any_json()].boxed()
}

/// A name from [`NAMES`], [`HOSTILE_NAMES`] or any short string.
pub(crate) fn name() -> BoxedStrategy<Value> {
    or_any(prop_oneof![
        12 => select(&NAMES[..]).prop_map(Value::from),
        1 => select(&HOSTILE_NAMES[..]).prop_map(Value::from),
        1 => re(".{0,12}").prop_map(Value::String),
    ])
    .boxed()
}

/// One of `choices` or, rarely, any short string.
pub(crate) fn one_of(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    or_any(prop_oneof![
        100 => select(choices).prop_map(Value::from),
        1 => re(".{0,8}").prop_map(Value::String),
    ])
    .boxed()
}

/// Sets `key` of the object `v` to `value` when given.
fn put(v: &mut Value, key: &str, value: Option<Value>) {
    if let (Some(obj), Some(value)) = (v.as_object_mut(), value) {
        obj.insert(key.to_owned(), value);
    }
}

fn path() -> BoxedStrategy<Value> {
    or_any(prop_oneof![
        8 => select(&["catalog/counter", "catalog/video/", "c1"][..]).prop_map(Value::from),
        1 => select(&["../outside", "/etc", "a/./b", "a\\b", ""][..]).prop_map(Value::from),
        1 => re("[a-z./]{0,16}").prop_map(Value::String),
    ])
    .boxed()
}

fn package() -> BoxedStrategy<Value> {
    let backup = (
        name(),
        one_of(&["Schedule", "Manual"]),
        proptest::option::of(or_any(prop_oneof![
            3 => select(&CRONS[..]).prop_map(Value::from),
            1 => re("[0-9*/,#LW?-]{1,3}( [0-9A-Z*/,#LW?-]{1,4}){4,5}").prop_map(Value::String),
        ])),
    )
        .prop_map(|(name, backup_type, period)| {
            let mut b = json!({"name": name, "backupType": backup_type});
            put(&mut b, "schedulePeriod", period);
            b
        });
    (
        name(),
        path(),
        one_of(&["Stateful", "Stateless"]),
        proptest::option::of(or_any(any::<bool>().prop_map(Value::Bool))),
        proptest::option::of(or_any(any::<bool>().prop_map(Value::Bool))),
        vec(backup, 0..3),
    )
        .prop_map(|(name, path, kind, selected, live, backups)| {
            let mut p = json!({"name": name, "packagePath": path, "packageType": kind});
            put(&mut p, "selected", selected);
            put(&mut p, "liveStatePackage", live);
            put(&mut p, "backupInformation", Some(Value::Array(backups)));
            p
        })
        .boxed()
}

fn cluster() -> BoxedStrategy<Value> {
    (
        name(),
        proptest::option::of(one_of(&["git", "helm"])),
        proptest::option::of(or_any(prop_oneof![
            any::<i32>().prop_map(Value::from),
            (0..4_i32).prop_map(Value::from),
        ])),
        proptest::option::of(name()),
    )
        .prop_map(|(name, repo_type, weight, repo)| {
            let mut c = json!({"name": name});
            put(&mut c, "repoType", repo_type);
            put(&mut c, "weight", weight);
            put(&mut c, "repo", repo);
            c
        })
        .boxed()
}

/// A ClusterPolicy spec as JSON: every field, each of its own type mostly and anything at times.
pub(crate) fn policy_spec() -> BoxedStrategy<Value> {
    let numbers = vec(
        (
            select(
                &[
                    "heartbeatIntervalMs",
                    "phiThreshold",
                    "acceptablePauseMs",
                    "leaseFreshSeconds",
                    "unreachableGraceSeconds",
                    "recoveryBeats",
                ][..],
            ),
            or_any(prop_oneof![
                8 => any::<u32>().prop_map(Value::from),
                1 => any::<i64>().prop_map(Value::from),
            ]),
        ),
        0..3,
    );
    (
        (
            name(),
            proptest::option::of(one_of(&["git", "helm"])),
            name(),
        ),
        proptest::option::of(one_of(&["Specific", "All"])),
        proptest::option::of(one_of(&["Automatic", "Manual", "None"])),
        vec(package(), 0..4),
        proptest::option::of((any::<bool>(), any::<bool>())),
        proptest::option::of((vec(cluster(), 0..4), vec(cluster(), 0..2))),
        proptest::option::of(numbers),
    )
        .prop_map(
            |((source, repo_type, repo), mode, transition, packages, retention, targets, fd)| {
                let mut selector = json!({"name": source, "repo": repo});
                put(&mut selector, "repoType", repo_type);
                let mut spec = json!({"clusterSelector": selector, "packageSelectors": packages});
                put(&mut spec, "selectMode", mode);
                put(&mut spec, "transitionMode", transition);
                put(
                    &mut spec,
                    "packageRetentionPolicy",
                    retention.map(|(retain, delete)| {
                        json!({"retainOnSource": retain, "deleteAfterTransition": delete})
                    }),
                );
                put(
                    &mut spec,
                    "targetClusterPolicy",
                    targets.map(
                        |(prefer, avoid)| json!({"preferClusters": prefer, "avoidClusters": avoid}),
                    ),
                );
                put(
                    &mut spec,
                    "faultDetection",
                    fd.map(|kv| {
                        Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
                );
                spec
            },
        )
        .boxed()
}

fn is_printable_line(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Validation reports every problem with the path of its field; evaluating writes printable
    /// condition messages whatever the spec held.
    #[test]
    fn arbitrary_cluster_policy_specs_never_panic_and_errors_name_their_field(
        json in prop_oneof![9 => policy_spec(), 1 => any_json()],
    ) {
        let Ok(spec) = serde_json::from_value::<ClusterPolicySpec>(json) else {
            return Ok(());
        };
        match validate(&spec) {
            Ok(valid) => {
                prop_assert!(valid.packages.len() <= spec.package_selectors.len());
                // What becomes a folder or file of the repository stays inside it.
                prop_assert!(is_safe_name(&spec.cluster_selector.name));
                for p in &spec.package_selectors {
                    prop_assert!(is_safe_name(&p.name) && is_safe_relative_path(&p.package_path), "{p:?}");
                }
                if let Some(target) = valid.target {
                    prop_assert_ne!(target, spec.cluster_selector.name.as_str());
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(e.field.starts_with("spec."), "{e}");
                    prop_assert!(is_printable_line(&e.reason), "{e:?}");
                    prop_assert!(is_printable_line(&e.to_string()), "{e:?}");
                }
            }
        }
        let now: Timestamp = "2026-11-21T10:04:30Z".parse()?;
        let eval = evaluate(&spec, None, Some(1), now);
        for c in &eval.status.conditions {
            prop_assert!(is_printable_line(&c.message), "condition {}: {:?}", c.type_, c.message);
        }
    }
}

#[test]
fn names_that_would_leave_the_repository_or_break_a_terminal_are_refused() {
    let spec: ClusterPolicySpec = serde_json::from_value(json!({
        "clusterSelector": {"name": "../../etc", "repo": "r"},
        "packageSelectors": [{"name": "video\u{1b}[2J", "packagePath": "catalog/video",
            "packageType": "Stateful",
            "backupInformation": [{"name": "b", "backupType": "Schedule",
                "schedulePeriod": "\u{1b}[2J * * * *"}]}],
        "targetClusterPolicy": {"preferClusters": [{"name": "/abs", "weight": 1}]},
    }))
    .unwrap();
    let errors = validate(&spec).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.clusterSelector.name",
            "spec.targetClusterPolicy.preferClusters[0].name",
            "spec.packageSelectors[0].name",
            "spec.packageSelectors[0].backupInformation[0].schedulePeriod",
        ]
    );
    for e in &errors {
        assert!(is_printable_line(&e.to_string()), "{e:?}");
    }
}
