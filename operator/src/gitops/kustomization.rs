//! Edits of a kustomization's top-level lists (`bases`, `resources`, `patchesStrategicMerge`)
//! made on the text, so every other byte — comments, key order, quoting, blank lines — stays as
//! the person who wrote the file left it. Pure; the caller checks the result parses to what it
//! wants and otherwise falls back to re-serialising.

/// The line of top-level key `field` (`field:` at column 0).
fn key_line(lines: &[&str], field: &str) -> Option<usize> {
    lines.iter().position(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
    })
}

/// `(value, " # comment")` of a line's remainder (a `#` after a space starts a comment).
fn split_comment(s: &str) -> (&str, &str) {
    match s.find(" #") {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// A scalar as written (`'a'`, `"a"`, `a`) → its value.
fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(s)
}

/// A block item line `<indent>- <value>` → `(indent, value)`.
fn item(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let rest = trimmed.strip_prefix("- ")?;
    Some((indent, unquote(split_comment(rest).0)))
}

/// The block items of the list whose key is on line `key`: `(line index, indent, value)`.
fn block_items<'a>(lines: &[&'a str], key: usize) -> Vec<(usize, &'a str, &'a str)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match item(line) {
            Some((indent, value)) if line.starts_with([' ', '\t', '-']) => {
                out.push((i, indent, value))
            }
            _ => break,
        }
    }
    out
}

/// The indentation block lists in this file use for their items (`""` when none has one).
fn usual_indent<'a>(lines: &[&'a str]) -> &'a str {
    lines
        .iter()
        .find_map(|l| item(l).map(|(indent, _)| indent))
        .unwrap_or("")
}

/// The line ending of `text`: `\r\n` when most of its lines end so (a file saved on Windows), so
/// an edit does not rewrite every line of it; else `\n`.
fn line_ending(text: &str) -> &'static str {
    if text.matches("\r\n").count() * 2 > text.matches('\n').count() {
        "\r\n"
    } else {
        "\n"
    }
}

fn join(lines: &[String], eol: &str, ends_with_newline: bool) -> String {
    let mut s = lines.join(eol);
    if ends_with_newline {
        s.push_str(eol);
    }
    s
}

/// The flow list `[a, b]` of a key line's value, if it is one (simple scalars only).
fn flow_items(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    if inner.contains(['[', ']', '{', '}']) {
        return None;
    }
    Some(
        inner
            .split(',')
            .map(|s| unquote(s).to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// `text` with `entry` appended to the list `field` (created when absent); `None` when the
/// layout is not one this edits safely. Unchanged text when `entry` is listed already.
pub fn with_entry(text: &str, field: &str, entry: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let newline = text.ends_with('\n') || text.is_empty();
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let Some(k) = key_line(&lines, field) else {
        out.push(format!("{field}:"));
        out.push(format!("{}- {entry}", usual_indent(&lines)));
        return Some(join(&out, line_ending(text), true));
    };
    let (value, comment) = split_comment(&lines[k][field.len() + 1..]);
    if let Some(mut items) = flow_items(value) {
        if !items.iter().any(|i| i == entry) {
            items.push(entry.to_owned());
        }
        out[k] = format!("{field}: [{}]{comment}", items.join(", "));
        return Some(join(&out, line_ending(text), newline));
    }
    if !value.trim().is_empty() {
        return None;
    }
    let items = block_items(&lines, k);
    if items.iter().any(|(_, _, v)| *v == entry) {
        return Some(text.to_owned());
    }
    let (after, indent) = items
        .last()
        .map_or((k, usual_indent(&lines)), |(i, indent, _)| (*i, *indent));
    out.insert(after + 1, format!("{indent}- {entry}"));
    Some(join(&out, line_ending(text), newline))
}

/// `text` without `entry` in the list `field`; `None` when the layout is not one this edits
/// safely. Unchanged text when `entry` is not listed.
pub fn without_entry(text: &str, field: &str, entry: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let newline = text.ends_with('\n');
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let Some(k) = key_line(&lines, field) else {
        return Some(text.to_owned());
    };
    let (value, comment) = split_comment(&lines[k][field.len() + 1..]);
    if let Some(items) = flow_items(value) {
        let kept: Vec<String> = items.into_iter().filter(|i| i != entry).collect();
        out[k] = format!("{field}: [{}]{comment}", kept.join(", "));
        return Some(join(&out, line_ending(text), newline));
    }
    if !value.trim().is_empty() {
        return None;
    }
    let items = block_items(&lines, k);
    let gone: Vec<usize> = items
        .iter()
        .filter(|(_, _, v)| *v == entry)
        .map(|(i, _, _)| *i)
        .collect();
    if items.len() == gone.len() && !gone.is_empty() {
        // The last item goes: keep the key as an empty list (`field: []`).
        out[k] = format!("{field}: []{comment}");
    }
    for i in gone.into_iter().rev() {
        out.remove(i);
    }
    Some(join(&out, line_ending(text), newline))
}

/// `text` with the top-level key `from` renamed `to` (value, comments and everything else
/// kept); `None` when `from` is not a top-level key.
pub fn rename_key(text: &str, from: &str, to: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let k = key_line(&lines, from)?;
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    out[k] = format!("{to}{}", &lines[k][from.len()..]);
    Some(join(&out, line_ending(text), text.ends_with('\n')))
}

#[cfg(test)]
pub(super) mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "# cluster2-aws: what runs here (keep this comment)\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases:   # packages\n  - ../../catalog/video   # the streamer\n\n  # redis comes and goes\nimages: []\n";

    #[test]
    fn an_entry_is_added_after_the_last_item_and_every_other_byte_is_kept() {
        let out = with_entry(K, "bases", "../../catalog/counter").unwrap();
        assert_eq!(
            out,
            K.replace(
                "  - ../../catalog/video   # the streamer\n",
                "  - ../../catalog/video   # the streamer\n  - ../../catalog/counter\n"
            )
        );
        assert_eq!(
            with_entry(&out, "bases", "../../catalog/counter").unwrap(),
            out,
            "idempotent"
        );
    }

    #[test]
    fn an_entry_is_removed_alone_and_the_last_one_leaves_an_empty_list() {
        let two = with_entry(K, "bases", "../../catalog/counter").unwrap();
        assert_eq!(
            without_entry(&two, "bases", "../../catalog/counter").unwrap(),
            K
        );
        let none = without_entry(K, "bases", "../../catalog/video").unwrap();
        assert!(none.contains("bases: [] # packages\n"), "{none}");
        assert!(none.starts_with("# cluster2-aws: what runs here (keep this comment)\n"));
        assert!(none.contains("  # redis comes and goes\n"));
    }

    #[test]
    fn flow_lists_absent_keys_and_quoted_items_are_handled() {
        let flow = "kind: Kustomization\nbases: [] # none yet\n";
        assert_eq!(
            with_entry(flow, "bases", "../../catalog/counter").unwrap(),
            "kind: Kustomization\nbases: [../../catalog/counter] # none yet\n"
        );
        let absent = "kind: Kustomization\nresources:\n- a.yaml\n";
        assert_eq!(
            with_entry(absent, "patchesStrategicMerge", "p.yaml").unwrap(),
            "kind: Kustomization\nresources:\n- a.yaml\npatchesStrategicMerge:\n- p.yaml\n"
        );
        let quoted = "bases:\n  - \"../../catalog/counter\"\n";
        assert_eq!(
            without_entry(quoted, "bases", "../../catalog/counter").unwrap(),
            "bases: []\n"
        );
        assert!(
            with_entry("bases: *anchor\n", "bases", "x").is_none(),
            "an alias is left to the fallback"
        );
    }
}
