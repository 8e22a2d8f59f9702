//! Property tests of the kustomization edits the GitOps writer makes: whatever the file holds,
//! an edit never panics; it either fails with one printable line naming the file, or leaves a
//! file that parses to what was asked — edited on the text (every comment kept) or, the
//! documented fallback, re-serialised.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;

use super::*;
use crate::gitops::kustomization::properties::{ENTRIES, kustomization_bytes};

/// What an edit was asked to do.
#[derive(Clone, Copy, Debug)]
enum Op {
    AddResource,
    RemoveResource,
    AddPatch,
    RemovePatch,
}

const OPS: [Op; 4] = [
    Op::AddResource,
    Op::RemoveResource,
    Op::AddPatch,
    Op::RemovePatch,
];

fn strings(v: &Value, field: &str) -> Vec<Value> {
    v.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether `entry` is listed where `op` looks for it (a patch by its `path`).
fn listed_for(op: Op, v: &Value, entry: &str) -> bool {
    let entry = Value::from(entry);
    match op {
        Op::AddResource | Op::RemoveResource => ["resources", "bases"]
            .iter()
            .any(|f| strings(v, f).contains(&entry)),
        Op::AddPatch | Op::RemovePatch => {
            strings(v, "patches")
                .iter()
                .any(|p| p.get("path") == Some(&entry))
                || strings(v, "patchesStrategicMerge").contains(&entry)
        }
    }
}

/// The comment lines of `text` (the ones a text edit keeps).
fn comment_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect()
}

/// One edit of a file holding `bytes`, checked: a printable error naming the file, or a
/// result that parses to what was asked and keeps the comments unless it was re-serialised.
fn check(path: &Path, bytes: &[u8], op: Op, entry: &str) -> Result<(), TestCaseError> {
    std::fs::write(path, bytes)?;
    let result = match op {
        Op::AddResource => add_resource(path, entry),
        Op::RemoveResource => remove_resource(path, entry),
        Op::AddPatch => add_patch(path, entry),
        Op::RemovePatch => remove_patch(path, entry),
    };
    match result {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("failed to "), "{msg}");
            prop_assert!(msg.contains("kustomization.yaml"), "names the file: {msg}");
            prop_assert!(
                !msg.chars().any(char::is_control),
                "control character in {msg:?}"
            );
            // U+FFFD is what raw non-UTF-8 bytes become when a message quotes them.
            if msg.contains('\u{fffd}') {
                let quoted = bytes.windows(3).any(|w| w == "\u{fffd}".as_bytes());
                prop_assert!(quoted, "raw bytes echoed: {msg:?}");
            }
        }
        Ok(changed) => {
            let after = std::fs::read(path)?;
            if !changed {
                prop_assert_eq!(&after[..], bytes, "unchanged means untouched");
            }
            let text = String::from_utf8(after);
            prop_assert!(text.is_ok(), "an edited file is UTF-8");
            let text = text.unwrap_or_default();
            let parsed = serde_saphyr::from_str::<Value>(&text);
            prop_assert!(parsed.is_ok(), "the result parses again: {:?}", text);
            let parsed = parsed.unwrap_or_default();
            let add = matches!(op, Op::AddResource | Op::AddPatch);
            prop_assert_eq!(
                listed_for(op, &parsed, entry),
                add,
                "asked for, got {:?}",
                text
            );
            if changed {
                let before = String::from_utf8_lossy(bytes);
                let reserialised = || serde_saphyr::to_string(&parsed).unwrap_or_default();
                prop_assert!(
                    in_order(&comment_lines(&before), &comment_lines(&text))
                        || text == reserialised(),
                    "a text edit lost a comment:\n{before:?}\n{text:?}"
                );
            }
        }
    }
    Ok(())
}

/// Runs with the runner rather than `proptest!` so that all cases share one folder (a folder per
/// case costs more than the edit).
#[test]
fn kustomization_edits_of_arbitrary_files_never_panic_and_errors_are_printable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kustomization.yaml");
    let cases = (
        kustomization_bytes(),
        select(&OPS[..]),
        select(&ENTRIES[..]),
    );
    TestRunner::new(ProptestConfig {
        cases: 10_000,
        ..ProptestConfig::default()
    })
    .run(&cases, |(bytes, op, entry)| check(&path, &bytes, op, entry))
    .unwrap();
}

/// Whether `part` appears in `whole` in order.
fn in_order(part: &[&str], whole: &[&str]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

#[test]
fn a_kustomization_that_does_not_parse_is_refused_on_one_line_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kustomization.yaml");
    let text = "kind: Kustomization\nresources: [a,\n  \u{1b}[2J secret: x\n";
    std::fs::write(&path, text).unwrap();
    let rendered = serde_saphyr::from_str::<Value>(text)
        .unwrap_err()
        .to_string();
    assert!(
        rendered.contains('\n'),
        "the parser's own message quotes the file: {rendered:?}"
    );
    let e = add_resource(&path, "b.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("failed to parse ") && e.contains("kustomization.yaml"),
        "{e}"
    );
    assert!(
        !e.chars().any(char::is_control) && !e.contains("secret"),
        "{e:?}"
    );
}
