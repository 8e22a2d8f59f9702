//! What this node can restore, for the heartbeat: the container runtime and whether it creates
//! containers from checkpoint images, and the CRIU, runc and kernel versions a restore depends on.
//!
//! Since Aug 2026 containerd (2.2+) and CRI-O ship with restore from checkpoint images turned off
//! (containerd `enable_experimental_restore_via_create`, CRI-O
//! `[crio.runtime.checkpoint_restore] container_level_enabled`); the agent reads the runtime's
//! configuration file to tell. What it cannot read is reported as unknown, never guessed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use transition_crds::heartbeat::RestoreCapability;

use crate::config::CapabilityArgs;

/// A runtime configuration file that cannot be used (the capability is then reported unknown,
/// with this as the reason).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("{path} is not valid TOML: {reason}")]
    Toml { path: String, reason: String },
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn parse_toml(path: &Path, text: &str) -> Result<toml::Table, RuntimeConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| RuntimeConfigError::Toml {
            path: path.display().to_string(),
            reason: e.message().to_owned(),
        })
}

/// How long one `--version` call may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime behind a CRI socket path (pure): `containerd`, `cri-o`, or empty (unknown).
pub fn runtime_of_socket(cri_socket: &str) -> &'static str {
    if cri_socket.contains("containerd") {
        "containerd"
    } else if cri_socket.contains("crio") || cri_socket.contains("cri-o") {
        "cri-o"
    } else {
        ""
    }
}

/// The first `N.N[.N…]` in a `--version` output (pure), e.g. `4.1.1` of `Version: 4.1.1`.
pub fn version_in(output: &str) -> String {
    output
        .split(|c: char| c.is_whitespace() || c == ',' || c == '+' || c == '~')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            let mut parts = w.split('.');
            parts.clone().count() >= 2
                && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or_default()
        .to_owned()
}

/// `(major, minor)` of a version string (pure).
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next()?.trim_start_matches('v').parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Every value of `key` in `table` and its sub-tables whose path ends with `parent` (or any
/// path when `parent` is empty), in document order (pure).
fn find_bools(table: &toml::Table, parent: &str, key: &str, path: &str, out: &mut Vec<bool>) {
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                find_bools(t, parent, key, &sub, out);
            }
            toml::Value::Boolean(b)
                if k == key && (parent.is_empty() || path.ends_with(parent)) =>
            {
                out.push(*b);
            }
            _ => {}
        }
    }
}

/// Whether a containerd configuration turns restore from checkpoint images on (pure), with where
/// that was read. Without the key, the default depends on the version: on before 2.2, off since.
pub fn containerd_restore(
    path: &Path,
    text: &str,
    version: &str,
) -> Result<(Option<bool>, String), RuntimeConfigError> {
    const KEY: &str = "enable_experimental_restore_via_create";
    let table = parse_toml(path, text)?;
    let mut found = Vec::new();
    find_bools(&table, "", KEY, "", &mut found);
    if let Some(on) = found.last() {
        return Ok((Some(*on), format!("{}: {KEY} = {on}", path.display())));
    }
    Ok(match major_minor(version) {
        Some(v) if v >= (2, 2) => (
            Some(false),
            format!(
                "{}: {KEY} not set (off by default since containerd 2.2; this is {version})",
                path.display()
            ),
        ),
        Some(_) => (
            Some(true),
            format!(
                "{}: {KEY} not set (on by default before containerd 2.2; this is {version})",
                path.display()
            ),
        ),
        None => (
            None,
            format!(
                "{}: {KEY} not set and the containerd version is unknown (off by default since 2.2)",
                path.display()
            ),
        ),
    })
}

/// Whether CRI-O configuration files (`crio.conf`, then its drop-ins in order; later ones win)
/// turn container-level restore on (pure). `enable_criu_support = false` turns every restore off.
pub fn crio_restore(
    files: &[(PathBuf, String)],
) -> Result<(Option<bool>, String), RuntimeConfigError> {
    let mut answer: (Option<bool>, String) = (
        None,
        "CRI-O: [crio.runtime.checkpoint_restore] container_level_enabled not set (off by default in releases since Aug 2026)".into(),
    );
    let mut criu_off: Option<String> = None;
    for (path, text) in files {
        let table = parse_toml(path, text)?;
        let mut found = Vec::new();
        find_bools(
            &table,
            "checkpoint_restore",
            "container_level_enabled",
            "",
            &mut found,
        );
        if let Some(on) = found.last() {
            answer = (
                Some(*on),
                format!(
                    "{}: checkpoint_restore.container_level_enabled = {on}",
                    path.display()
                ),
            );
        }
        let mut criu = Vec::new();
        find_bools(&table, "", "enable_criu_support", "", &mut criu);
        match criu.last() {
            Some(false) => {
                criu_off = Some(format!("{}: enable_criu_support = false", path.display()))
            }
            Some(true) => criu_off = None,
            None => {}
        }
    }
    Ok(match criu_off {
        Some(source) => (Some(false), source),
        None => answer,
    })
}

/// The first line of `<bin> --version`, or empty when it cannot be run within the deadline.
async fn version_of(bin: &str) -> String {
    let run = tokio::process::Command::new(bin)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let text = if text.trim().is_empty() {
                String::from_utf8_lossy(&out.stderr).into_owned()
            } else {
                text.into_owned()
            };
            version_in(&text)
        }
        _ => String::new(),
    }
}

/// The runtime configuration files to read: the one given, else the runtime's default place
/// (for CRI-O also the `crio.conf.d` drop-ins, sorted).
fn config_files(args: &CapabilityArgs, runtime: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let main = match (&args.runtime_config, runtime) {
        (Some(p), _) => p.clone(),
        (None, "containerd") => PathBuf::from("/etc/containerd/config.toml"),
        (None, "cri-o") => PathBuf::from("/etc/crio/crio.conf"),
        _ => return files,
    };
    if runtime == "cri-o" {
        let dropins = main.with_file_name("crio.conf.d");
        files.push(main);
        if let Ok(dir) = std::fs::read_dir(&dropins) {
            let mut more: Vec<PathBuf> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            more.sort();
            files.extend(more);
        }
    } else {
        files.push(main);
    }
    files
}

/// Whether the runtime restores from checkpoint images, read from its configuration.
fn restore_from_config(
    args: &CapabilityArgs,
    runtime: &str,
    version: &str,
) -> (Option<bool>, String) {
    let files = config_files(args, runtime);
    if files.is_empty() {
        return (
            None,
            format!("the agent cannot read the configuration of runtime {runtime:?}"),
        );
    }
    let mut texts = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(t) => texts.push((path, t)),
            // Drop-ins are optional; the main file is not.
            Err(source) if texts.is_empty() => {
                let path = path.display().to_string();
                return (None, RuntimeConfigError::Read { path, source }.to_string());
            }
            Err(_) => {}
        }
    }
    let parsed = match (runtime, texts.first()) {
        ("cri-o", _) => crio_restore(&texts),
        (_, Some((path, text))) => containerd_restore(path, text, version),
        (_, None) => return (None, "no runtime configuration file".into()),
    };
    parsed.unwrap_or_else(|reason| {
        (
            None,
            format!("failed to read the runtime configuration: {reason}"),
        )
    })
}

/// Probes this node (`cri_socket` from the Node's annotation, may be empty).
pub async fn probe(args: &CapabilityArgs, cri_socket: &str) -> RestoreCapability {
    let runtime = args
        .runtime
        .clone()
        .unwrap_or_else(|| runtime_of_socket(cri_socket).to_owned());
    let runtime_version = match runtime.as_str() {
        "containerd" => version_of("containerd").await,
        "cri-o" => version_of("crio").await,
        _ => String::new(),
    };
    let (restore_enabled, restore_source) = match args.restore_enabled {
        Some(on) => (Some(on), format!("--restore-enabled={on}")),
        None => restore_from_config(args, &runtime, &runtime_version),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    RestoreCapability {
        runtime,
        runtime_version,
        restore_enabled,
        restore_source,
        criu_version: version_of(&args.criu_bin).await,
        runc_version: version_of(&args.runc_bin).await,
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_own_output() {
        assert_eq!(version_in("Version: 4.1.1\n"), "4.1.1");
        assert_eq!(
            version_in("runc version 1.1.12+ds1\ncommit: v1.1.12\nspec: 1.0.2-dev"),
            "1.1.12"
        );
        assert_eq!(
            version_in("containerd github.com/containerd/containerd/v2 v2.2.0 abc"),
            "2.2.0"
        );
        assert_eq!(version_in("no digits here"), "");
        assert_eq!(major_minor("2.2.0"), Some((2, 2)));
        assert_eq!(major_minor("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(major_minor(""), None);
    }

    #[test]
    fn containerd_restore_is_off_unless_turned_on_in_its_config() {
        let p = Path::new("/etc/containerd/config.toml");
        let on = r#"
# restore opt-in (containerd 2.2+)
version = 3
[plugins."io.containerd.cri.v1.runtime"]
  enable_experimental_restore_via_create = true
"#;
        assert_eq!(containerd_restore(p, on, "2.2.0").unwrap().0, Some(true));
        let unset = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\"]\n";
        let (off, why) = containerd_restore(p, unset, "2.2.1").unwrap();
        assert_eq!(off, Some(false));
        assert!(why.contains("off by default since containerd 2.2"), "{why}");
        assert_eq!(containerd_restore(p, unset, "2.1.4").unwrap().0, Some(true));
        assert_eq!(
            containerd_restore(p, unset, "").unwrap().0,
            None,
            "unknown, not guessed"
        );
        let err = containerd_restore(p, "[plugins", "2.2.0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/containerd/config.toml is not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn crio_drop_ins_override_the_main_file_and_criu_support_off_turns_restore_off() {
        let main = (
            PathBuf::from("/etc/crio/crio.conf"),
            "[crio.runtime]\nenable_criu_support = true\n".to_owned(),
        );
        assert_eq!(crio_restore(std::slice::from_ref(&main)).unwrap().0, None);
        let on = (
            PathBuf::from("/etc/crio/crio.conf.d/10-restore.conf"),
            "[crio.runtime.checkpoint_restore]\ncontainer_level_enabled = true\n".to_owned(),
        );
        let (yes, why) = crio_restore(&[main.clone(), on.clone()]).unwrap();
        assert_eq!(yes, Some(true));
        assert!(why.contains("10-restore.conf"), "{why}");
        let criu_off = (
            PathBuf::from("/etc/crio/crio.conf.d/20-no-criu.conf"),
            "[crio.runtime]\nenable_criu_support = false\n".to_owned(),
        );
        assert_eq!(crio_restore(&[main, on, criu_off]).unwrap().0, Some(false));
    }

    #[test]
    fn the_runtime_is_named_from_the_cri_socket() {
        assert_eq!(
            runtime_of_socket("unix:///run/containerd/containerd.sock"),
            "containerd"
        );
        assert_eq!(runtime_of_socket("unix:///var/run/crio/crio.sock"), "cri-o");
        assert_eq!(runtime_of_socket(""), "");
    }
}
