//! `kubectl explain` is the first documentation users read: every field of every CRD has its
//! own description, and none is boilerplate inherited from a Rust or Kubernetes type.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

/// Texts that come from a type, not from the field (k8s-openapi's `Time`, `MicroTime`, schemars
/// defaults, derive output).
const BOILERPLATE: &[&str] = &[
    "Time is a wrapper around time.Time",
    "MicroTime is version of Time",
    "Auto-generated derived type",
    "Condition contains details for one aspect",
];

fn walk(schema: &JSONSchemaProps, path: &str, problems: &mut Vec<String>) {
    for (name, prop) in schema.properties.iter().flatten() {
        let here = format!("{path}.{name}");
        match prop.description.as_deref() {
            None | Some("") => problems.push(format!("{here}: no description")),
            Some(d) if BOILERPLATE.iter().any(|b| d.contains(b)) => {
                problems.push(format!("{here}: boilerplate description {d:?}"));
            }
            Some(_) => {}
        }
        walk(prop, &here, problems);
        if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
            &prop.items
        {
            walk(items, &format!("{here}[]"), problems);
        }
    }
}

#[test]
fn every_crd_field_has_its_own_description_and_none_is_boilerplate() {
    let mut problems = Vec::new();
    for crd in transition_crds::all_crds() {
        let kind = crd.spec.names.kind.clone();
        for version in &crd.spec.versions {
            let root = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap();
            // Conditions items are the standard metav1.Condition: their fields are documented.
            walk(root, &kind, &mut problems);
        }
    }
    assert!(
        problems.is_empty(),
        "{} field(s) to document:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
