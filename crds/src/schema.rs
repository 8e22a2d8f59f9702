//! Hand-written OpenAPI schema fragments for shapes `schemars` cannot express structurally
//! (Kubernetes requires structural schemas: no `additionalProperties` beside `properties`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// A string→string map (annotations, labels).
pub fn string_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" }
    })
}

/// An object that must carry a non-empty `name` and may carry any other field (the Go original
/// stores a whole `corev1.Container` here; we keep every field it sends).
pub fn named_open_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": { "type": "string", "minLength": 1, "description": "Container name." },
            "image": {
                "type": "string",
                "description": "The container's image (optional; other container fields are kept)."
            }
        },
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A list of [`named_open_object`]s.
pub fn named_open_object_list(generator: &mut SchemaGenerator) -> Schema {
    let item = named_open_object(generator);
    json_schema!({ "type": "array", "items": item })
}

/// A list of standard `metav1.Condition`s keyed by `type`.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let item = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition::json_schema(generator);
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// Makes a generated CRD acceptable to, and readable on, every API server we target:
/// * drops the `null` that schemars puts into the `enum` of an optional enum field (API server
///   1.20 rejects the whole CRD with a misleading message otherwise);
/// * drops schemars' `nullable: true` in the `spec` of the kinds people write (ClusterPolicy,
///   Transition): API servers that publish OpenAPI v2 (1.20 here) strip the `type` of nullable
///   fields, so `kubectl explain` shows `<>` and cannot recurse into them. Our types never send
///   `null` there (every `Option` is skipped when `None`), and a `null` someone writes is pruned
///   on create/update (as if absent). What the operator writes by server-side apply (every
///   `status`, Checkpoint and NodeHealth `spec`) keeps `nullable`: the 1.20 API server stores an
///   object field a manager stops sending as `null`, which a non-nullable field refuses.
pub fn normalize(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            walk(root, &mut |p| {
                if let Some(values) = p.enum_.as_mut() {
                    values.retain(|v| !v.0.is_null());
                }
            });
            let written_by_people =
                matches!(crd.spec.names.kind.as_str(), "ClusterPolicy" | "Transition");
            if let Some(spec) = root
                .properties
                .as_mut()
                .and_then(|p| p.get_mut("spec"))
                .filter(|_| written_by_people)
            {
                walk(spec, &mut |p| p.nullable = None);
            }
        }
    }
    crd
}

/// Calls `f` on `props` and every schema nested in it.
fn walk(props: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(props);
    for child in props.properties.iter_mut().flat_map(|m| m.values_mut()) {
        walk(child, f);
    }
    match props.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => walk(item, f),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(|i| walk(i, f)),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = props.additional_properties.as_mut() {
        walk(extra, f);
    }
    for list in [
        props.one_of.as_mut(),
        props.any_of.as_mut(),
        props.all_of.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        list.iter_mut().for_each(|s| walk(s, f));
    }
    if let Some(not) = props.not.as_mut() {
        walk(not, f);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_generated_crd_has_null_in_an_enum() {
        for crd in crate::all_crds() {
            let text = serde_json::to_string(&crd).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            fn check(v: &serde_json::Value, name: &str) {
                match v {
                    serde_json::Value::Object(map) => {
                        if let Some(serde_json::Value::Array(values)) = map.get("enum") {
                            assert!(
                                !values.iter().any(serde_json::Value::is_null),
                                "{name} has null in an enum"
                            );
                        }
                        map.values().for_each(|c| check(c, name));
                    }
                    serde_json::Value::Array(items) => items.iter().for_each(|c| check(c, name)),
                    _ => {}
                }
            }
            check(&value, crd.metadata.name.as_deref().unwrap_or_default());
        }
    }

    #[test]
    fn no_spec_field_people_write_is_nullable_and_what_the_operator_applies_stays_nullable() {
        for crd in crate::all_crds() {
            if !matches!(crd.spec.names.kind.as_str(), "ClusterPolicy" | "Transition") {
                continue;
            }
            let root = &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap()
                .properties
                .as_ref()
                .unwrap();
            let text = |k: &str| serde_json::to_string(&root.get(k)).unwrap();
            assert!(
                !text("spec").contains("\"nullable\""),
                "{:?}: nullable spec fields lose their type in OpenAPI v2 (kubectl explain shows <>)",
                crd.metadata.name
            );
            assert!(
                text("status").contains("\"nullable\""),
                "{:?}: status keeps nullable (server-side apply on 1.20 writes removed fields as null)",
                crd.metadata.name
            );
        }
    }
}
