//! Validation of a kubelet checkpoint archive before it becomes an image layer, and the runtime
//! annotations read from its `config.dump` / `spec.dump`. Works on any `Read` (one pass).
//!
//! Refused, naming the entry: absolute paths, `..` components, symlinks or hard links whose
//! target leaves the archive, device/FIFO entries, entries or totals over the limits, and archives
//! missing `config.dump`, `spec.dump` or `checkpoint/inventory.img`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Entries every kubelet checkpoint archive has.
pub const REQUIRED: [&str; 3] = ["config.dump", "spec.dump", "checkpoint/inventory.img"];

/// Size limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sum of entry sizes.
    pub max_total_bytes: u64,
    pub max_entries: usize,
    /// `config.dump` / `spec.dump` are parsed in memory: each at most this big.
    pub max_dump_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 64 << 30,
            max_entries: 100_000,
            max_dump_bytes: 4 << 20,
        }
    }
}

/// Why an archive was refused. Names and reasons taken from the archive are escaped and cut
/// ([`shown`]): a garbage archive never prints binary to a terminal or into an Event.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// `entry` is the entry's name as [`shown`].
    #[error("failed to accept checkpoint archive: entry \"{entry}\" {reason}")]
    Entry { entry: String, reason: String },
    #[error("failed to accept checkpoint archive: required entry {0:?} is missing")]
    Missing(&'static str),
    #[error("failed to accept checkpoint archive: {0}")]
    Limit(String),
    /// The tar stream is cut short or corrupt `at` an entry (its message [`shown`]).
    #[error("failed to read checkpoint archive at {at}: {source}")]
    Corrupt {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read checkpoint archive: {0}")]
    Read(#[source] std::io::Error),
}

/// Bytes from an archive as an error shows them (escaped, capped:
/// [`transition_runtime::text::shown`]).
pub use transition_runtime::text::shown;

/// A read error of the tar reader at `at`, its message [`shown`] (the tar reader quotes header
/// fields and names from the archive verbatim).
fn corrupt(at: impl Into<String>, e: &std::io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        at: at.into(),
        source: std::io::Error::new(e.kind(), shown(e.to_string().as_bytes())),
    }
}

/// What the archive says about the checkpointed container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub entries: usize,
    pub total_bytes: u64,
    pub container_name: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub rootfs_image_name: Option<String>,
    pub rootfs_image_id: Option<String>,
    pub runtime: Option<String>,
    pub engine: Option<String>,
}

/// Normalises an entry path (`./a/b` → `a/b`) and checks it stays inside the archive.
fn safe_path(raw: &Path, entry: &str) -> Result<PathBuf, ArchiveError> {
    let bad = |reason: &str| ArchiveError::Entry {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(bad("has an absolute path")),
            Component::ParentDir => return Err(bad("has a `..` component")),
        }
    }
    if out.as_os_str().is_empty() && !entry.trim_start_matches("./").is_empty() {
        return Err(bad("has an empty path"));
    }
    Ok(out)
}

/// Whether link `target`, relative to the folder of `link`, stays inside the archive.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn read_small<R: Read>(
    entry: &mut R,
    limit: u64,
    name: &str,
) -> Result<serde_json::Value, ArchiveError> {
    let mut buf = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("entry \"{name}\""), &e))?;
    if buf.len() as u64 > limit {
        return Err(ArchiveError::Entry {
            entry: name.to_owned(),
            reason: format!("is larger than {limit} bytes"),
        });
    }
    serde_json::from_slice(&buf).map_err(|e| ArchiveError::Entry {
        entry: name.to_owned(),
        reason: format!("is not valid JSON ({e})"),
    })
}

fn str_field(v: &serde_json::Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| {
        v.get(*k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

/// Reads the whole archive once, validating every entry. Returns what `config.dump` and
/// `spec.dump` say about the container.
pub fn validate<R: Read>(reader: R, limits: Limits) -> Result<ArchiveInfo, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut info = ArchiveInfo::default();
    let mut seen = BTreeMap::<&'static str, bool>::new();
    let mut config_dump = None;
    let mut spec_dump = None;
    let mut last = None::<String>;
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(|e| {
            let at = match &last {
                Some(name) => format!("the entry after \"{name}\""),
                None => "the first entry".to_owned(),
            };
            corrupt(at, &e)
        })?;
        let name = shown(&entry.path_bytes());
        let raw = entry
            .path()
            .map_err(|e| corrupt(format!("entry \"{name}\""), &e))?
            .into_owned();
        last = Some(name.clone());
        let path = safe_path(&raw, &name)?;
        info.entries += 1;
        if info.entries > limits.max_entries {
            return Err(ArchiveError::Limit(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| corrupt(format!("entry \"{name}\""), &e))?;
        info.total_bytes = info.total_bytes.saturating_add(size);
        if info.total_bytes > limits.max_total_bytes {
            return Err(ArchiveError::Limit(format!(
                "contents exceed {} bytes",
                limits.max_total_bytes
            )));
        }
        let kind = entry.header().entry_type();
        check_kind(&mut entry, kind, &path, &name)?;
        let key = path.to_string_lossy();
        for req in REQUIRED {
            if key == req {
                seen.insert(req, true);
            }
        }
        if key == "config.dump" && kind.is_file() {
            config_dump = Some(read_small(&mut entry, limits.max_dump_bytes, &name)?);
        } else if key == "spec.dump" && kind.is_file() {
            spec_dump = Some(read_small(&mut entry, limits.max_dump_bytes, &name)?);
        }
    }
    for req in REQUIRED {
        if !seen.contains_key(req) {
            return Err(ArchiveError::Missing(req));
        }
    }
    describe(&mut info, config_dump.as_ref(), spec_dump.as_ref());
    Ok(info)
}

/// Links must stay inside the archive; only files, folders and pax headers are allowed.
fn check_kind<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    kind: tar::EntryType,
    path: &Path,
    name: &str,
) -> Result<(), ArchiveError> {
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name()
            .map_err(|e| corrupt(format!("entry \"{name}\""), &e))?
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let inside = if kind.is_hard_link() {
            safe_path(&target, name).is_ok() && !target.is_absolute()
        } else {
            link_stays_inside(path, &target)
        };
        if !inside {
            return Err(ArchiveError::Entry {
                entry: name.to_owned(),
                reason: format!(
                    "links to \"{}\", outside the archive",
                    shown(target.as_os_str().as_bytes())
                ),
            });
        }
    } else if !(kind.is_file()
        || kind.is_dir()
        || kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions())
    {
        return Err(ArchiveError::Entry {
            entry: name.to_owned(),
            reason: format!("has an unsupported type ({kind:?})"),
        });
    }
    Ok(())
}

/// Fills in what the runtime's dump files say about the container and its pod.
fn describe(
    info: &mut ArchiveInfo,
    config_dump: Option<&serde_json::Value>,
    spec_dump: Option<&serde_json::Value>,
) {
    if let Some(c) = config_dump {
        info.container_name = str_field(c, &["name"]);
        info.rootfs_image_name = str_field(c, &["rootfsImageName", "rootfsImage"]);
        info.rootfs_image_id = str_field(c, &["rootfsImageRef", "rootfsImageID"]);
        info.runtime = str_field(c, &["runtime"]);
    }
    if let Some(a) = spec_dump.and_then(|s| s.get("annotations")) {
        info.pod_name = str_field(
            a,
            &["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"],
        );
        info.pod_namespace = str_field(
            a,
            &[
                "io.kubernetes.pod.namespace",
                "io.kubernetes.cri.sandbox-namespace",
            ],
        );
        if info.container_name.is_none() {
            info.container_name = str_field(
                a,
                &[
                    "io.kubernetes.container.name",
                    "io.kubernetes.cri.container-name",
                ],
            );
        }
        info.engine = if a.get("io.kubernetes.cri.sandbox-name").is_some() {
            Some("containerd".to_owned())
        } else if a.get("io.kubernetes.pod.name").is_some() {
            Some("CRI-O".to_owned())
        } else {
            None
        };
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tar in memory: (path, kind, data or link target).
    fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            match kind {
                'f' => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                }
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                }
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                }
                'h' => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                }
                _ => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_size(0);
                }
            }
            h.set_mode(0o600);
            // Write the raw name so that unsafe paths reach the validator unchanged.
            let name_bytes = path.as_bytes();
            h.as_old_mut().name[..name_bytes.len()].copy_from_slice(name_bytes);
            if matches!(kind, 'l' | 'h') {
                h.set_link_name(data).unwrap();
            }
            h.set_cksum();
            let body: &[u8] = if *kind == 'f' { data.as_bytes() } else { &[] };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    const CONFIG: &str = r#"{"name":"counter","rootfsImageName":"docker.io/library/busybox:1.36","rootfsImageRef":"sha256:abc","runtime":"runc"}"#;
    const SPEC: &str = r#"{"annotations":{"io.kubernetes.pod.name":"counter-7d9f5","io.kubernetes.pod.namespace":"default"}}"#;

    fn good() -> Vec<(&'static str, char, &'static str)> {
        vec![
            ("config.dump", 'f', CONFIG),
            ("spec.dump", 'f', SPEC),
            ("checkpoint", 'd', ""),
            ("checkpoint/inventory.img", 'f', "inv"),
            ("checkpoint/pages-1.img", 'f', "pages"),
            ("rootfs-diff.tar", 'f', ""),
            ("checkpoint/link-in", 'l', "pages-1.img"),
        ]
    }

    #[test]
    fn a_kubelet_style_archive_passes_and_yields_its_annotations() {
        let info = validate(&tar_of(&good())[..], Limits::default()).unwrap();
        assert_eq!(info.container_name.as_deref(), Some("counter"));
        assert_eq!(
            info.rootfs_image_name.as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
        assert_eq!(info.rootfs_image_id.as_deref(), Some("sha256:abc"));
        assert_eq!(info.pod_name.as_deref(), Some("counter-7d9f5"));
        assert_eq!(info.pod_namespace.as_deref(), Some("default"));
        assert_eq!(info.runtime.as_deref(), Some("runc"));
        assert_eq!(info.entries, 7);
    }

    fn refused_with(extra: (&'static str, char, &'static str)) -> String {
        let mut entries = good();
        entries.push(extra);
        validate(&tar_of(&entries)[..], Limits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn traversal_absolute_paths_and_escaping_links_are_refused_naming_the_entry() {
        let e = refused_with(("../../etc/cron.d/x", 'f', "boom"));
        assert!(
            e.contains("../../etc/cron.d/x") && e.contains("`..`"),
            "{e}"
        );
        let e = refused_with(("/etc/passwd", 'f', "boom"));
        assert!(e.contains("/etc/passwd") && e.contains("absolute"), "{e}");
        let e = refused_with(("checkpoint/evil", 'l', "../../../etc/shadow"));
        assert!(
            e.contains("checkpoint/evil") && e.contains("outside the archive"),
            "{e}"
        );
        let e = refused_with(("abs-link", 'l', "/etc/shadow"));
        assert!(e.contains("abs-link") && e.contains("outside"), "{e}");
        let e = refused_with(("hard", 'h', "../outside"));
        assert!(e.contains("hard"), "{e}");
        let e = refused_with(("pipe", 'p', ""));
        assert!(e.contains("pipe") && e.contains("unsupported type"), "{e}");
    }

    #[test]
    fn a_missing_required_entry_is_named() {
        let entries: Vec<_> = good()
            .into_iter()
            .filter(|e| e.0 != "checkpoint/inventory.img")
            .collect();
        let e = validate(&tar_of(&entries)[..], Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checkpoint/inventory.img") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn limits_on_total_size_entries_and_dump_size_hold() {
        let bytes = tar_of(&good());
        let tight = Limits {
            max_total_bytes: 10,
            ..Limits::default()
        };
        assert!(
            validate(&bytes[..], tight)
                .unwrap_err()
                .to_string()
                .contains("exceed")
        );
        let few = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        assert!(
            validate(&bytes[..], few)
                .unwrap_err()
                .to_string()
                .contains("entries")
        );
        let small_dump = Limits {
            max_dump_bytes: 8,
            ..Limits::default()
        };
        assert!(
            validate(&bytes[..], small_dump)
                .unwrap_err()
                .to_string()
                .contains("config.dump")
        );
    }

    #[test]
    fn a_bad_config_dump_is_refused_as_json() {
        let mut entries = good();
        entries[0] = ("config.dump", 'f', "{not json");
        let e = validate(&tar_of(&entries)[..], Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.dump") && e.contains("JSON"), "{e}");
    }
}
