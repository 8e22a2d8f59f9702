//! Property tests of the text edits of a kustomization: whatever the file holds they never
//! panic, and an edit they make keeps every other line — comments included — and the file's
//! line endings.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;

/// A string strategy for `pattern`, compiled once (a `&str` strategy compiles its regex anew for
/// every case, which dominates the run time in a debug build).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

/// Kustomizations as people write them: comments, flow and block lists, quoting, anchors and
/// aliases, several documents, patches, odd roots and values.
const KUSTOMIZATIONS: [&str; 18] = [
    "# cluster2-aws: what runs here (keep this comment)\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases:   # packages\n  - ../../catalog/video   # the streamer\n\n  # redis comes and goes\nimages: []\n",
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../catalog/video\n  - ../../catalog/redis # db\n",
    "kind: Kustomization\nresources: [../../catalog/video, 'x.yaml'] # flow\nbases: []\n",
    "kind: Kustomization\nx-common: &pkgs\n  - ../../catalog/video\nresources: *pkgs\n",
    "resources: &r\n  - a.yaml\nbases: *r\n",
    "---\nkind: Kustomization\nresources:\n- a.yaml\n---\nkind: Other\n",
    "kind: Kustomization\nresources:\n- a.yaml\n...\n",
    "{kind: Kustomization, resources: [a, b]}\n",
    "resources:\n  - \"../../catalog/counter\"\n  - '../../catalog/video'\n",
    "patches:\n  - path: p.yaml\n  - {path: q.yaml, target: {kind: Deployment}}\npatchesStrategicMerge:\n- transition-counter.yaml\n",
    "",
    "# only a comment\n",
    "resources:\n",
    "resources: ~ # none yet\nbases: null\n",
    "resources:\n\t- a.yaml\n",
    "resources: |\n  - a.yaml\n",
    "resources:\n  # first\n  - a.yaml\n\n  # second\n  - b.yaml\nimages:\n- name: busybox\n  newName: reg/ckpt\n  digest: sha256:00\n",
    "- a\n- b\n",
];

/// Entries as the writer passes them, and some a YAML reader would take for something else.
pub(in crate::gitops) const ENTRIES: [&str; 20] = [
    "../../catalog/counter",
    "../../catalog/video",
    "a.yaml",
    "transition-counter.yaml",
    "x: y",
    "# not a comment",
    "'quoted'",
    "[flow]",
    "*alias",
    "&anchor",
    "- dash",
    "a b",
    "",
    " ",
    "ü/ñ",
    "null",
    "~",
    "0777",
    "true",
    "{x}",
];

/// One change to a byte string (may leave it non-UTF-8).
#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<Index>(),
            select(&b"\n\r\t #:-[]{}&*'\"\xef\xff\0"[..])
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
    .boxed()
}

/// What a kustomization file may hold: a known layout with CRLF line endings, a UTF-8 BOM, extra
/// documents or YAML-ish text around it, mutated byte-wise (so also non-UTF-8); or any bytes.
pub(in crate::gitops) fn kustomization_bytes() -> BoxedStrategy<Vec<u8>> {
    let shaped = (
        select(&KUSTOMIZATIONS[..]),
        any::<bool>(),
        any::<bool>(),
        0..4_u8,
        re("[a-z:#&*\\[\\]{},'\" \n-]{0,24}"),
        prop_oneof![2 => Just(Vec::new()), 1 => vec(mutation(), 1..4)],
    )
        .prop_map(|(base, crlf, bom, extra, tail, mutations)| {
            let mut text = match extra {
                0 => base.to_owned(),
                1 => format!("---\n{base}"),
                2 => format!("{base}---\nkind: Other # second document\n"),
                _ => format!("{base}{tail}"),
            };
            if crlf {
                text = text.replace('\n', "\r\n");
            }
            if bom {
                text.insert(0, '\u{feff}');
            }
            mutate(text.into_bytes(), &mutations)
        });
    prop_oneof![
        8 => shaped,
        1 => vec(any::<u8>(), 0..128),
    ]
    .boxed()
}

/// Whether `part` appears in `whole` in order (other items may come between).
fn in_order(part: &[&str], whole: &[&str]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

/// The line ending every line of `text` has, if they all have the same one (`None` also for a
/// text ending in a bare `\r`, which an appended line turns into a `\r\n`).
fn uniform_ending(text: &str) -> Option<&'static str> {
    if text.ends_with('\r') {
        return None;
    }
    let lf = text.matches('\n').count();
    let crlf = text.matches("\r\n").count();
    match (lf, crlf) {
        (0, _) => None,
        (n, m) if n == m => Some("\r\n"),
        (_, 0) => Some("\n"),
        _ => None,
    }
}

/// `text`'s lines without their endings: `\n` and every `\r` before it or at the end of the text
/// (an edit that appends after a line ending in bare `\r`s adds its own `\n` or `\r\n` after them,
/// every byte kept: `"a\r"` becomes `"a\r\r\n"` in a CRLF file, `"a\r\r"` becomes `"a\r\r\n"`).
fn lines_of(text: &str) -> Vec<&str> {
    text.split_inclusive('\n')
        .map(|l| l.trim_end_matches('\n').trim_end_matches('\r'))
        .collect()
}

/// `text`'s lines without the line of key `field` (the edited one).
fn lines_but<'a>(text: &'a str, field: &str) -> Vec<&'a str> {
    let lines = lines_of(text);
    let key = key_line(&lines, field);
    lines
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != key)
        .map(|(_, l)| l)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Adding keeps every line but the key's, in order, and the line endings; removing only
    /// takes lines out (and rewrites the key's); renaming changes the key's line alone.
    #[test]
    fn text_edits_of_arbitrary_kustomizations_never_panic_and_keep_every_other_line(
        bytes in kustomization_bytes(),
        field in select(&["resources", "bases", "patchesStrategicMerge", "patches"][..]),
        entry in select(&ENTRIES[..]),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let kept = lines_but(&text, field);
        if let Some(out) = with_entry(&text, field, entry) {
            let lines = lines_of(&out);
            prop_assert!(in_order(&kept, &lines), "a line was lost or moved:\n{text:?}\n{out:?}");
            if let Some(eol) = uniform_ending(&text) {
                prop_assert_eq!(uniform_ending(&out), Some(eol), "line endings changed: {:?}", out);
            }
        }
        if let Some(out) = without_entry(&text, field, entry) {
            let lines = lines_but(&out, field);
            prop_assert!(in_order(&lines, &kept), "a line appeared:\n{text:?}\n{out:?}");
            let comments = |ls: &[&str]| -> Vec<String> {
                ls.iter().filter(|l| l.trim_start().starts_with('#')).map(|l| (*l).to_owned()).collect()
            };
            prop_assert_eq!(comments(&lines), comments(&kept), "a comment was lost: {:?}", out);
            if let Some(eol) = uniform_ending(&text)
                && out.contains('\n')
            {
                prop_assert_eq!(uniform_ending(&out), Some(eol), "line endings changed: {:?}", out);
            }
        }
        if let Some(out) = rename_key(&text, field, "renamed") {
            prop_assert_eq!(lines_but(&out, "renamed"), kept);
            if uniform_ending(&text).is_some() {
                prop_assert_eq!(out.len() + field.len(), text.len() + "renamed".len(), "{:?}", out);
            }
        }
    }
}

#[test]
fn an_edit_of_a_file_saved_on_windows_keeps_its_crlf_line_endings() {
    let text = "# keep me\r\nkind: Kustomization\r\nresources:\r\n  - a.yaml\r\n";
    assert_eq!(
        with_entry(text, "resources", "b.yaml").unwrap(),
        "# keep me\r\nkind: Kustomization\r\nresources:\r\n  - a.yaml\r\n  - b.yaml\r\n"
    );
    assert_eq!(
        without_entry(text, "resources", "a.yaml").unwrap(),
        "# keep me\r\nkind: Kustomization\r\nresources: []\r\n"
    );
    assert_eq!(
        rename_key(text, "resources", "bases").unwrap(),
        text.replace("resources:", "bases:")
    );
}
