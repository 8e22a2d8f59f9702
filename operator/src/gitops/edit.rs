//! Pure edits of a GitOps checkout (no git here):
//! * `in-place`: rewrite the `image:` scalars of a workload's containers; every other byte of
//!   the file — comments, key order, quoting, other documents — stays identical;
//! * `kustomize`: add the package to the target cluster's kustomization and pin its images with
//!   an `images:` entry (`name → newName@digest`), manifests untouched;
//! * fencing: take the package out of the source cluster's kustomization.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why an edit could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("failed to find package {package:?}: {path} does not exist in the repository")]
    MissingPackage { package: String, path: String },
    #[error("failed to read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("failed to parse {path} as a kustomization: {reason}")]
    Kustomization { path: String, reason: String },
    #[error("failed to write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// An image reference split into name (registry/repository) and tag/digest.
pub fn image_name(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Rewrites, in `text` (one YAML file, any number of documents), every `image:` whose value is
/// exactly `old` to `new`, keeping quoting, comments and everything else byte for byte. Returns
/// the new text and how many scalars changed.
pub fn rewrite_images_in_place(text: &str, old: &str, new: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 64);
    let mut count = 0;
    for line in text.split_inclusive('\n') {
        match rewrite_image_line(line, old, new) {
            Some(changed) => {
                out.push_str(&changed);
                count += 1;
            }
            None => out.push_str(line),
        }
    }
    (out, count)
}

/// `[indent][- ]image: [quote]value[quote][ # comment][newline]` with value == old → new.
fn rewrite_image_line(line: &str, old: &str, new: &str) -> Option<String> {
    let trimmed = line.trim_start();
    let after_dash = trimmed.strip_prefix("- ").map_or(trimmed, str::trim_start);
    let rest = after_dash.strip_prefix("image:")?;
    let prefix_len = line.len() - rest.len();
    let value_start = prefix_len + (rest.len() - rest.trim_start().len());
    let value_part = &line[value_start..];
    let (quote, inner_start) = match value_part.chars().next() {
        Some(q @ ('"' | '\'')) => (Some(q), value_start + 1),
        _ => (None, value_start),
    };
    let inner = &line[inner_start..];
    let inner_len = match quote {
        Some(q) => inner.find(q)?,
        None => inner
            .find(" #")
            .unwrap_or_else(|| inner.trim_end_matches(['\n', '\r']).trim_end().len()),
    };
    let value = inner[..inner_len].trim_end();
    if value != old {
        return None;
    }
    Some(format!(
        "{}{}{}",
        &line[..inner_start],
        new,
        &line[inner_start + value.len()..]
    ))
}

/// The non-empty YAML documents of a file, parsed, with their index (document numbers count
/// `---` separators, as [`rewrite_images_in_docs`] does). A file that does not parse is an error
/// naming it and the document (the caller reports it and moves on).
fn parse_documents(path: &Path, text: &str) -> Result<Vec<(usize, Value)>, EditError> {
    let mut docs = Vec::new();
    for (i, doc) in split_documents(text).iter().enumerate() {
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let value = serde_saphyr::from_str(doc).map_err(|e| EditError::Read {
            path: path.display().to_string(),
            reason: format!("document {}: {}", i + 1, yaml_reason(&e)),
        })?;
        docs.push((i, value));
    }
    Ok(docs)
}

/// The workloads of a file with their container and init-container images: (kind, name, images).
pub fn workload_images(
    path: &Path,
    text: &str,
) -> Result<Vec<(String, String, Vec<String>)>, EditError> {
    let mut found = Vec::new();
    for (_, value) in parse_documents(path, text)? {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let spec = match kind.as_str() {
            "Pod" => value.get("spec"),
            _ => value.pointer("/spec/template/spec"),
        };
        let images: Vec<String> = ["containers", "initContainers"]
            .iter()
            .filter_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_array))
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str).map(str::to_owned))
            .collect();
        if !images.is_empty() {
            found.push((kind, name, images));
        }
    }
    Ok(found)
}

/// A workload by identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
    /// `None` matches any namespace (manifests often leave it to kustomize).
    pub namespace: Option<String>,
}

/// Indexes of the documents of `text` that are the workload `w` (kind/name/namespace).
pub fn find_workload(path: &Path, text: &str, w: &WorkloadRef) -> Result<Vec<usize>, EditError> {
    let mut hits = Vec::new();
    for (i, value) in parse_documents(path, text)? {
        let ns = value.pointer("/metadata/namespace").and_then(Value::as_str);
        if value.get("kind").and_then(Value::as_str) == Some(w.kind.as_str())
            && value.pointer("/metadata/name").and_then(Value::as_str) == Some(w.name.as_str())
            && (w.namespace.is_none() || ns.is_none() || ns == w.namespace.as_deref())
        {
            hits.push(i);
        }
    }
    Ok(hits)
}

/// Like [`rewrite_images_in_place`], but only inside the documents numbered `docs`.
pub fn rewrite_images_in_docs(text: &str, docs: &[usize], old: &str, new: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 64);
    let mut count = 0;
    let mut doc = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            doc += 1;
            out.push_str(line);
            continue;
        }
        match docs
            .contains(&doc)
            .then(|| rewrite_image_line(line, old, new))
            .flatten()
        {
            Some(changed) => {
                out.push_str(&changed);
                count += 1;
            }
            None => out.push_str(line),
        }
    }
    (out, count)
}

fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs
}

fn read(path: &Path) -> Result<String, EditError> {
    std::fs::read_to_string(path).map_err(|e| EditError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), EditError> {
    std::fs::write(path, text).map_err(|e| EditError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn load_kustomization(path: &Path) -> Result<Value, EditError> {
    if !path.exists() {
        return Ok(
            serde_json::json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}),
        );
    }
    let text = read(path)?;
    serde_saphyr::from_str(&text).map_err(|e| EditError::Kustomization {
        path: path.display().to_string(),
        reason: yaml_reason(&e),
    })
}

/// Longest YAML parser message an error carries, in characters.
const MAX_REASON_CHARS: usize = 300;

/// The parser's message on one line: without the source snippet it renders by default (lines
/// of the file itself, which may hold anything), control characters escaped, cut to
/// [`MAX_REASON_CHARS`].
fn yaml_reason(e: &serde_saphyr::Error) -> String {
    let message = e.without_snippet().to_string();
    let mut shown = String::new();
    for c in message.chars().take(MAX_REASON_CHARS) {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    if message.chars().count() > MAX_REASON_CHARS {
        shown.push('…');
    }
    shown
}

fn save_kustomization(path: &Path, value: &Value) -> Result<(), EditError> {
    let text = serde_saphyr::to_string(value).map_err(|e| EditError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write(path, &text)
}

/// Relative path from folder `from` to folder `to` (both relative to the repository root).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Where a kustomization lists folders and files: `resources` (what this writes; kustomize ≥ 2.1,
/// Argo CD, Flux) and the deprecated `bases` (kustomize 2.0, still read so existing files keep
/// working). An entry is looked for in both.
const ENTRY_LISTS: [&str; 2] = ["resources", "bases"];

/// A top-level list item of a kustomization: a path string (`resources`, `bases`,
/// `patchesStrategicMerge`) or a patch `{path: …}` (`patches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item<'a> {
    Path(&'a str),
    Patch(&'a str),
}

impl Item<'_> {
    fn value(self) -> Value {
        match self {
            Item::Path(p) => Value::String(p.to_owned()),
            Item::Patch(p) => serde_json::json!({ "path": p }),
        }
    }

    /// The item as written after `- ` on its own line.
    fn text(self) -> String {
        match self {
            Item::Path(p) => p.to_owned(),
            Item::Patch(p) => format!("path: {p}"),
        }
    }

    /// Whether the parsed list item `v` is this one (a patch matches by its `path`).
    fn matches(self, v: &Value) -> bool {
        match self {
            Item::Path(p) => v.as_str() == Some(p),
            Item::Patch(p) => v.get("path").and_then(Value::as_str) == Some(p),
        }
    }
}

/// Whether `item` is listed under `field` of the parsed kustomization.
fn listed(k: &Value, field: &str, item: Item<'_>) -> bool {
    k.get(field)
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| item.matches(v)))
}

/// Adds folder or file `entry` under `resources` unless it is listed in `resources` or `bases`.
/// Returns whether the file changed.
pub fn add_resource(kustomization: &Path, entry: &str) -> Result<bool, EditError> {
    let k = load_kustomization(kustomization)?;
    if ENTRY_LISTS.iter().any(|f| listed(&k, f, Item::Path(entry))) {
        return Ok(false);
    }
    change_list(kustomization, "resources", Item::Path(entry), true)
}

/// Removes `entry` from `resources` and `bases` (fencing), if the file exists. Returns whether
/// the file changed.
pub fn remove_resource(kustomization: &Path, entry: &str) -> Result<bool, EditError> {
    if !kustomization.exists() {
        return Ok(false);
    }
    let mut changed = false;
    for field in ENTRY_LISTS {
        changed |= change_list(kustomization, field, Item::Path(entry), false)?;
    }
    if changed {
        bases_to_resources_when_empty(kustomization)?;
    }
    Ok(changed)
}

/// kustomize 5 refuses a kustomization whose only list is an empty `bases:` ("kustomization.yaml
/// is empty") — a fenced source would then not build and its GitOps agent would not prune. An
/// emptied `bases:` with no `resources:` becomes `resources: []` (on the text when it can).
fn bases_to_resources_when_empty(path: &Path) -> Result<(), EditError> {
    let k = load_kustomization(path)?;
    let emptied = k
        .get("bases")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if !emptied || k.get("resources").is_some() {
        return Ok(());
    }
    let mut want = k.clone();
    if let Some(obj) = want.as_object_mut() {
        obj.remove("bases");
        obj.insert("resources".into(), Value::Array(vec![]));
    }
    let text = read(path)?;
    match super::kustomization::rename_key(&text, "bases", "resources") {
        Some(t) if serde_saphyr::from_str::<Value>(&t).ok().as_ref() == Some(&want) => {
            write(path, &t)
        }
        _ => save_kustomization(path, &want),
    }
}

/// Lists patch file `file` as `patches: [{path: file}]` unless it is listed there or under the
/// deprecated `patchesStrategicMerge` (an older operator's entry keeps working). Returns whether
/// the file changed.
pub fn add_patch(kustomization: &Path, file: &str) -> Result<bool, EditError> {
    let k = load_kustomization(kustomization)?;
    if listed(&k, "patches", Item::Patch(file))
        || listed(&k, "patchesStrategicMerge", Item::Path(file))
    {
        return Ok(false);
    }
    change_list(kustomization, "patches", Item::Patch(file), true)
}

/// Removes patch file `file` from `patches` and `patchesStrategicMerge`, if the kustomization
/// exists. Returns whether the file changed.
pub fn remove_patch(kustomization: &Path, file: &str) -> Result<bool, EditError> {
    if !kustomization.exists() {
        return Ok(false);
    }
    let a = change_list(kustomization, "patches", Item::Patch(file), false)?;
    let b = change_list(
        kustomization,
        "patchesStrategicMerge",
        Item::Path(file),
        false,
    )?;
    Ok(a || b)
}

/// Deletes `path` if it exists. Returns whether it did.
pub fn remove_file(path: &Path) -> Result<bool, EditError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(EditError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Writes `text` to `path` unless it already holds exactly that. Returns whether it changed.
pub fn write_if_changed(path: &Path, text: &str) -> Result<bool, EditError> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(false);
    }
    write(path, text)?;
    Ok(true)
}

/// Adds (or removes) `item` in the top-level list `field`: on the text, keeping comments and
/// formatting, when the edited text parses to exactly the wanted kustomization; else by
/// re-serialising it. Returns whether the file changed.
fn change_list(path: &Path, field: &str, item: Item<'_>, add: bool) -> Result<bool, EditError> {
    let fail = |reason: String| EditError::Kustomization {
        path: path.display().to_string(),
        reason,
    };
    let before = load_kustomization(path)?;
    let mut want = before.clone();
    let obj = want
        .as_object_mut()
        .ok_or_else(|| fail("not a mapping".into()))?;
    if add {
        let list = obj.entry(field).or_insert_with(|| Value::Array(vec![]));
        if list.is_null() {
            *list = Value::Array(vec![]);
        }
        let a = list
            .as_array_mut()
            .ok_or_else(|| fail(format!("`{field}` is not a list")))?;
        if !a.iter().any(|v| item.matches(v)) {
            a.push(item.value());
        }
    } else if let Some(a) = obj.get_mut(field).and_then(Value::as_array_mut) {
        a.retain(|v| !item.matches(v));
    }
    if want == before {
        return Ok(false);
    }
    let text = if path.exists() {
        read(path)?
    } else {
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n".to_owned()
    };
    let edited = if add {
        super::kustomization::with_entry(&text, field, &item.text())
    } else {
        super::kustomization::without_entry(&text, field, &item.text())
    };
    let parses_to = |t: &str| serde_saphyr::from_str::<Value>(t).ok();
    match edited {
        Some(t) if parses_to(&t).as_ref() == Some(&want) => write(path, &t)?,
        _ => save_kustomization(path, &want)?,
    }
    Ok(true)
}

/// Pins `image` (any tag of its name) to `new_name@digest` in the kustomization's `images:`.
/// Returns whether the file changed.
pub fn set_image(
    kustomization: &Path,
    image: &str,
    new_name: &str,
    digest: &str,
) -> Result<bool, EditError> {
    let mut k = load_kustomization(kustomization)?;
    let name = image_name(image).to_owned();
    let wanted = serde_json::json!({"name": name, "newName": new_name, "digest": digest});
    let obj = k.as_object_mut().ok_or_else(|| EditError::Kustomization {
        path: kustomization.display().to_string(),
        reason: "not a mapping".into(),
    })?;
    let images = obj.entry("images").or_insert_with(|| Value::Array(vec![]));
    let Some(list) = images.as_array_mut() else {
        return Err(EditError::Kustomization {
            path: kustomization.display().to_string(),
            reason: "`images` is not a list".into(),
        });
    };
    match list
        .iter_mut()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name.as_str()))
    {
        Some(existing) if *existing == wanted => return Ok(false),
        Some(existing) => *existing = wanted,
        None => list.push(wanted),
    }
    save_kustomization(kustomization, &k)?;
    Ok(true)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# counter: keep this comment\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: counter   # trailing comment\n  annotations:\n    transition.dcnlab.ssu.ac.kr/packageName: counter\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: 'docker.io/library/busybox:1.36'\n      containers:\n        - name: counter\n          image: docker.io/library/busybox:1.36   # base image\n        - image: \"docker.io/library/busybox:1.36\"\n          name: sidecar\n        - name: other\n          image: nginx:1.25\n---\n# another document, untouched\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {image: docker.io/library/busybox:1.36x}\n";

    #[test]
    fn in_place_rewrite_changes_only_the_matching_image_scalars() {
        let new = "127.0.0.1:5000/ckpt/counter@sha256:abc";
        let (out, n) = rewrite_images_in_place(FILE, "docker.io/library/busybox:1.36", new);
        assert_eq!(
            n, 3,
            "init, main and sidecar; not nginx, not the ConfigMap value"
        );
        let expected = FILE
            .replace(
                "image: 'docker.io/library/busybox:1.36'",
                &format!("image: '{new}'"),
            )
            .replace(
                "image: docker.io/library/busybox:1.36   # base image",
                &format!("image: {new}   # base image"),
            )
            .replace(
                "image: \"docker.io/library/busybox:1.36\"",
                &format!("image: \"{new}\""),
            );
        assert_eq!(out, expected, "every other byte is identical");
        let (same, zero) = rewrite_images_in_place(&out, "docker.io/library/busybox:1.36", new);
        assert_eq!(
            (same.as_str(), zero),
            (out.as_str(), 0),
            "re-running changes nothing"
        );
    }

    #[test]
    fn only_the_named_workloads_documents_are_rewritten() {
        let text = "kind: Deployment\nmetadata: {name: a, namespace: default}\nspec: {template: {spec: {containers: [{name: c, image: x}]}}}\n---\nkind: Deployment\nmetadata:\n  name: b\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: x\n";
        let w = WorkloadRef {
            kind: "Deployment".into(),
            name: "b".into(),
            namespace: Some("default".into()),
        };
        let docs = find_workload(Path::new("f.yaml"), text, &w).unwrap();
        assert_eq!(docs, vec![1]);
        let (out, n) = rewrite_images_in_docs(text, &docs, "x", "y");
        assert_eq!(n, 1);
        assert!(
            out.ends_with("          image: y\n")
                && out.starts_with("kind: Deployment\nmetadata: {name: a")
        );
        let other_ns = WorkloadRef {
            namespace: Some("prod".into()),
            ..w.clone()
        };
        assert_eq!(
            find_workload(
                Path::new("f.yaml"),
                "kind: Deployment\nmetadata: {name: b, namespace: default}\n",
                &other_ns
            )
            .unwrap(),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn workloads_and_their_images_are_found_across_documents() {
        let found = workload_images(Path::new("counter.yaml"), FILE).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "Deployment");
        assert_eq!(found[0].2.len(), 4);
        let err = workload_images(Path::new("bad.yaml"), "kind: Deployment\nmetadata: [oops\n")
            .unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }

    #[test]
    fn image_names_drop_tag_and_digest_but_keep_registry_ports() {
        assert_eq!(
            image_name("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox"
        );
        assert_eq!(
            image_name("127.0.0.1:5000/ckpt/c@sha256:ab"),
            "127.0.0.1:5000/ckpt/c"
        );
        assert_eq!(image_name("127.0.0.1:5000/ckpt/c"), "127.0.0.1:5000/ckpt/c");
        assert_eq!(image_name("redis"), "redis");
    }

    #[test]
    fn kustomization_edits_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kustomization.yaml");
        std::fs::write(&k, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases:\n  - ../../catalog/redis\n").unwrap();
        assert!(add_resource(&k, "../../catalog/counter").unwrap());
        assert!(!add_resource(&k, "../../catalog/counter").unwrap());
        assert!(
            !add_resource(&k, "../../catalog/redis").unwrap(),
            "listed under the deprecated bases: kept, not listed twice"
        );
        assert!(
            set_image(
                &k,
                "docker.io/library/busybox:1.36",
                "reg/ckpt",
                "sha256:00"
            )
            .unwrap()
        );
        assert!(
            !set_image(
                &k,
                "docker.io/library/busybox:1.36",
                "reg/ckpt",
                "sha256:00"
            )
            .unwrap()
        );
        assert!(
            set_image(
                &k,
                "docker.io/library/busybox:1.37",
                "reg/ckpt",
                "sha256:11"
            )
            .unwrap(),
            "same name, new digest"
        );
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&k).unwrap()).unwrap();
        assert_eq!(v["images"].as_array().unwrap().len(), 1);
        assert_eq!(v["images"][0]["digest"], "sha256:11");
        assert!(remove_resource(&k, "../../catalog/redis").unwrap());
        assert!(!remove_resource(&k, "../../catalog/redis").unwrap());
        assert_eq!(
            v["resources"][0], "../../catalog/counter",
            "written under resources"
        );
    }

    #[test]
    fn patches_are_written_under_patches_and_an_older_patches_strategic_merge_entry_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kustomization.yaml");
        let text = "# target cluster (keep me)\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../catalog/video\n";
        std::fs::write(&k, text).unwrap();
        assert!(add_patch(&k, "transition-counter.yaml").unwrap());
        assert!(!add_patch(&k, "transition-counter.yaml").unwrap());
        assert_eq!(
            std::fs::read_to_string(&k).unwrap(),
            format!("{text}patches:\n  - path: transition-counter.yaml\n"),
            "edited on the text: the comment and indentation stay"
        );
        assert!(remove_patch(&k, "transition-counter.yaml").unwrap());
        assert!(!remove_patch(&k, "transition-counter.yaml").unwrap());
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&k).unwrap()).unwrap();
        assert_eq!(v["patches"], serde_json::json!([]));

        let old = "kind: Kustomization\npatchesStrategicMerge:\n- transition-counter.yaml\n";
        std::fs::write(&k, old).unwrap();
        assert!(
            !add_patch(&k, "transition-counter.yaml").unwrap(),
            "an older operator's entry is not listed twice"
        );
        assert!(remove_patch(&k, "transition-counter.yaml").unwrap());
        assert_eq!(
            std::fs::read_to_string(&k).unwrap(),
            "kind: Kustomization\npatchesStrategicMerge: []\n"
        );

        std::fs::write(
            &k,
            "kind: Kustomization\nbases:   # packages\n  - ../../catalog/a\n",
        )
        .unwrap();
        assert!(remove_resource(&k, "../../catalog/a").unwrap());
        assert_eq!(
            std::fs::read_to_string(&k).unwrap(),
            "kind: Kustomization\nresources: [] # packages\n",
            "an emptied bases: becomes resources: [] (kustomize 5 refuses an only-empty bases:)"
        );
    }

    #[test]
    fn relative_paths_between_repository_folders() {
        assert_eq!(
            relative(
                Path::new("clusters/cluster2-aws"),
                Path::new("catalog/counter")
            ),
            PathBuf::from("../../catalog/counter")
        );
        assert_eq!(
            relative(Path::new("a"), Path::new("a/b")),
            PathBuf::from("b")
        );
    }
}
