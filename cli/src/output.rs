//! Output: aligned tables (colour only on a terminal), JSON and YAML, and durations as people
//! read them.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::Serialize;

use crate::{Error, Format};

/// Writes `value` as JSON or YAML (`Format::Table` is the caller's own rendering).
pub fn structured<T: Serialize>(
    format: Format,
    value: &T,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(value).map_err(|e| Error::Output(e.to_string()))? + "\n"
        }
        Format::Yaml | Format::Table => {
            serde_saphyr::to_string(value).map_err(|e| Error::Output(e.to_string()))?
        }
    };
    write(out, &text)
}

pub fn write(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::Output(e.to_string()))
}

/// A table: a header and rows, columns padded to their widest cell (colour codes not counted).
#[derive(Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line prefixed by `indent`.
    pub fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(visible_len(c));
                }
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::from(indent);
            for (i, c) in cells.iter().enumerate() {
                l.push_str(c);
                if i + 1 < cells.len() {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(visible_len(c));
                    l.push_str(&" ".repeat(pad + 2));
                }
            }
            l.trim_end().to_owned() + "\n"
        };
        let mut text = line(&self.header);
        for r in &self.rows {
            text.push_str(&line(r));
        }
        text
    }
}

/// Colours for a terminal; plain text otherwise (pipes, files, tests).
#[derive(Clone, Copy)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    pub fn stdout() -> Paint {
        Paint {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bad(self, text: &str) -> String {
        self.wrap("31", text)
    }
    pub fn good(self, text: &str) -> String {
        self.wrap("32", text)
    }
    pub fn warn(self, text: &str) -> String {
        self.wrap("33", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
}

/// `42s`, `3m10s`, `2h5m`, `3d4h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Milliseconds as seconds with one decimal.
pub fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_whatever_the_colours() {
        let paint = Paint { on: true };
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec![paint.bad("xx"), "1".into()]);
        t.row(vec!["yyyy".into(), "2".into()]);
        let text = t.render("");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A     LONGER");
        assert_eq!(lines[2], "yyyy  2");
        assert_eq!(visible_len(lines[1]), "xx    1".len());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(190)), "3m10s");
        assert_eq!(human(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d4h");
        assert_eq!(seconds(1234), "1.2s");
    }
}
