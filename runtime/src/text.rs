//! Text from outside (archive names, tar headers, file contents) as errors and logs show it: never
//! raw control characters or binary on a terminal.

/// Longest text [`shown`] shows, in characters.
pub const SHOWN_CHARS: usize = 200;

/// `bytes` as an error shows them: UTF-8 escaped as `{:?}` escapes it (quotes, backslashes,
/// control and other unprintable characters: `\n`, `\u{1b}`, `\u{202e}`; a single quote is
/// kept), other bytes as `\xNN`, cut after [`SHOWN_CHARS`] characters with `…`.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if chars == SHOWN_CHARS {
                out.push('…');
                return out;
            }
            if c == '\'' {
                out.push(c);
            } else {
                out.extend(c.escape_debug());
            }
            chars += 1;
        }
        for b in chunk.invalid() {
            if chars == SHOWN_CHARS {
                out.push('…');
                return out;
            }
            out.push_str(&format!("\\x{b:02x}"));
            chars += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_invalid_bytes_are_escaped_and_long_text_is_cut() {
        assert_eq!(shown(b"a\x1b[2J\xff'b"), "a\\u{1b}[2J\\xff'b");
        let long = shown(&[b'x'; 300]);
        assert_eq!(long.chars().count(), SHOWN_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
