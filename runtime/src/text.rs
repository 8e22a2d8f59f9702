//! Text from outside (archive names, tar headers, file contents) as errors and logs show it: never
//! raw control characters or binary on a terminal.

/// Longest text [`shown`] shows, in characters of its output (escapes included), before the `…`.
pub const SHOWN_CHARS: usize = 200;

/// `bytes` as an error shows them: UTF-8 escaped as `{:?}` escapes it (quotes, backslashes,
/// control and other unprintable characters: `\n`, `\u{1b}`, `\u{202e}`; a single quote is
/// kept), other bytes as `\xNN`, cut with `…` before the output would pass [`SHOWN_CHARS`]
/// characters (escapes count as what they print: 200 NUL bytes do not make 800 characters).
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut push = |piece: &str, out: &mut String| {
        let n = piece.chars().count();
        if chars + n > SHOWN_CHARS {
            out.push('…');
            return false;
        }
        out.push_str(piece);
        chars += n;
        true
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let piece: String = if c == '\'' {
                c.to_string()
            } else {
                c.escape_debug().collect()
            };
            if !push(&piece, &mut out) {
                return out;
            }
        }
        for b in chunk.invalid() {
            if !push(&format!("\\x{b:02x}"), &mut out) {
                return out;
            }
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
        let escaped = shown(&[0xff; 300]);
        assert_eq!(escaped.chars().count(), SHOWN_CHARS + 1, "{escaped}");
        assert!(escaped.starts_with("\\xff\\xff"));
    }
}
