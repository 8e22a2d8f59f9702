//! The flag reference of a binary, rendered from its clap definition (one source of truth: the
//! `#[arg]` doc comments). Each binary's tests compare it with the committed
//! `docs/reference/<binary>.md` (a drift check, like the CRD YAML) and rewrite it when
//! `TRANSITION_BLESS=1` is set.

use std::path::Path;

/// Markdown: a title, the binary's about text, and a table of every visible flag with its
/// environment variable, default and description.
pub fn render(name: &str, mut cmd: clap::Command) -> String {
    cmd.build();
    let mut out = format!(
        "# `{name}` flags and environment variables\n\n\
         <!-- Generated from the clap definitions; do not edit. Regenerate: \
         `TRANSITION_BLESS=1 cargo test --workspace flag_reference` -->\n\n"
    );
    if let Some(about) = cmd.get_about() {
        // clap drops the doc comment's final period.
        let about = about.to_string();
        let stop = if about.ends_with(['.', '!', '?']) {
            ""
        } else {
            "."
        };
        out.push_str(&format!("{about}{stop}\n\n"));
    }
    out.push_str(
        "Every flag can also be set through its environment variable (the flag wins). \
         Values that are credentials are read from files or Secrets, never from the command line.\n\n",
    );
    out.push_str("| Flag | Environment | Default | Description |\n|---|---|---|---|\n");
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let Some(long) = arg.get_long() else {
            continue;
        };
        if matches!(long, "help" | "version") {
            continue;
        }
        let value = if arg.get_action().takes_values() {
            let names: Vec<String> = arg
                .get_value_names()
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
            format!(" <{}>", names.join(" "))
        } else {
            String::new()
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else if defaults.iter().all(String::is_empty) {
            "(empty)".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        // clap drops a one-line doc comment's final period.
        if !help.is_empty() && !help.ends_with(['.', '!', '?']) {
            help.push('.');
        }
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|p| !p.is_hide_set())
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        if !possible.is_empty() && !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            help.push_str(&format!(" One of {}.", possible.join(", ")));
        }
        out.push_str(&format!(
            "| `--{long}{}` | {env} | {default} | {} |\n",
            value.replace('|', "\\|"),
            help.replace('|', "\\|")
        ));
    }
    out
}

/// The visible flags without a description (each must say what it does).
pub fn undocumented(mut cmd: clap::Command) -> Vec<String> {
    cmd.build();
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_help().is_none())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .filter(|l| !matches!(l.as_str(), "help" | "version"))
        .collect()
}

/// `rel` under the repository root, found from the crate folder cargo gives the running test
/// (`CARGO_MANIFEST_DIR` at run time; the compile-time one can name another checkout when a
/// shared target folder reuses a test binary built there).
pub fn repo_file(compiled_manifest_dir: &str, rel: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(compiled_manifest_dir));
    dir.join("..").join(rel)
}

/// The drift check each binary's tests run: the committed reference at `path` matches `cmd`
/// (or is rewritten with `TRANSITION_BLESS=1`), and every visible flag has a description.
pub fn check_reference(name: &str, cmd: clap::Command, path: &Path) -> Result<(), DriftError> {
    check_or_bless(path, &render(name, cmd.clone()))?;
    let missing = undocumented(cmd);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DriftError::Undocumented { flags: missing })
    }
}

/// Why the committed reference does not match.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(
        "failed to match {path}: it differs from the flags in the code; regenerate with `TRANSITION_BLESS=1 cargo test --workspace flag_reference` and commit it"
    )]
    Drift { path: String },
    #[error("failed to document the flags {flags:?}: each needs a doc comment saying what it does")]
    Undocumented { flags: Vec<String> },
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Compares `rendered` with the file at `path`, or writes it when `TRANSITION_BLESS=1`.
pub fn check_or_bless(path: &Path, rendered: &str) -> Result<(), DriftError> {
    let io = |source| DriftError::Io {
        path: path.display().to_string(),
        source,
    };
    if std::env::var("TRANSITION_BLESS").is_ok_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        return std::fs::write(path, rendered).map_err(io);
    }
    let committed = std::fs::read_to_string(path).map_err(io)?;
    if committed != rendered {
        return Err(DriftError::Drift {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    /// demo: does things.
    struct Demo {
        /// Where to listen.
        #[arg(long, env = "DEMO_ADDR", default_value = "0.0.0.0:80")]
        addr: String,
        /// A switch | with a pipe.
        #[arg(long, env = "DEMO_ON", default_value_t = false)]
        on: bool,
        #[arg(long, hide = true)]
        secret_knob: Option<String>,
    }

    #[test]
    fn the_reference_lists_flag_env_default_and_description_and_skips_hidden_flags() {
        use clap::CommandFactory;
        let md = render("demo", Demo::command());
        assert!(md.contains("demo: does things."), "{md}");
        assert!(
            md.contains("| `--addr <ADDR>` | `DEMO_ADDR` | `0.0.0.0:80` | Where to listen. |"),
            "{md}"
        );
        assert!(md.contains("A switch \\| with a pipe."), "{md}");
        assert!(!md.contains("secret"), "{md}");
        assert!(!md.contains("--help"), "{md}");
    }
}
