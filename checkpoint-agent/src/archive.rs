//! Which files in the checkpoint folder are archives to upload, and when one is complete.
//!
//! The kubelet writes `checkpoint-*.tar` in place, so an archive counts as complete only when
//! (1) its size and mtime stayed the same for the settle time (checked by the watcher), (2) it ends
//! like a finished tar (size a multiple of 512, last 1024 bytes zero: the two end-of-archive
//! blocks), and (3) no process has it open for writing (a /proc scan). Symlinks, folders and
//! names that cannot be a safe object-key segment are never uploaded.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A regular file that may be an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
    pub inode: u64,
}

/// Why a directory entry is not a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not named `*.tar`, or a hidden/temporary file: silently ignored.
    NotAnArchive,
    /// A symlink, folder or special file: never followed.
    NotRegular,
    /// A name that cannot be an object-key segment (non-UTF-8, `..`, spaces, control bytes),
    /// as [`shown`]: a log line never carries its raw bytes.
    UnsafeName(String),
}

/// A file name as the agent shows it (escaped, capped: [`transition_runtime::text::shown`]).
pub use transition_runtime::text::shown;

/// Classifies one directory entry (by `symlink_metadata`: links are not followed).
pub fn classify(path: &Path) -> std::io::Result<Result<Candidate, Skip>> {
    let name_os = path.file_name().unwrap_or_else(|| OsStr::new(""));
    let bytes = name_os.as_bytes();
    if !bytes.ends_with(b".tar") || bytes.starts_with(b".") {
        return Ok(Err(Skip::NotAnArchive));
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Ok(Err(Skip::NotRegular));
    }
    let Some(name) = name_os.to_str() else {
        return Ok(Err(Skip::UnsafeName(shown(bytes))));
    };
    if transition_crds::storage::ArchiveKey::new("c", "n", name).is_err() {
        return Ok(Err(Skip::UnsafeName(shown(bytes))));
    }
    Ok(Ok(Candidate {
        path: path.to_path_buf(),
        name: name.to_owned(),
        size: meta.len(),
        mtime: meta.modified()?,
        inode: meta.ino(),
    }))
}

/// Whether the file ends like a complete tar archive (two zero blocks at a 512-byte boundary).
pub fn has_tar_end(path: &Path) -> std::io::Result<bool> {
    let mut file = open_no_follow(path)?;
    let len = file.metadata()?.len();
    if len < 1024 || len % 512 != 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1024))?;
    let mut tail = [0u8; 1024];
    file.read_exact(&mut tail)?;
    Ok(tail.iter().all(|b| *b == 0))
}

/// Opens a file for reading, refusing symlinks (O_NOFOLLOW).
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether any process has `path` open for writing (scans `/proc/*/fd` and `fdinfo` flags).
/// Processes we may not inspect are skipped.
pub fn open_for_writing(path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for proc_entry in procs.flatten() {
        let pid = proc_entry.file_name();
        if !pid.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let fd_dir = proc_entry.path().join("fd");
        let Ok(fds) = std::fs::read_dir(&fd_dir) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|link| link == target) {
                let info = proc_entry.path().join("fdinfo").join(fd.file_name());
                if fd_is_writable(&info) {
                    return true;
                }
            }
        }
    }
    false
}

/// Reads the `flags:` line of an fdinfo file; O_WRONLY (1) or O_RDWR (2) means writable.
fn fd_is_writable(fdinfo: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(fdinfo) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_tar_with_its_end_blocks_is_complete_and_a_cut_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&full).unwrap());
        let data = vec![7u8; 3000];
        let mut header = tar::Header::new_gnu();
        header.set_size(3000);
        header.set_cksum();
        builder
            .append_data(&mut header, "spec.dump", &data[..])
            .unwrap();
        builder.into_inner().unwrap().flush().unwrap();
        assert!(has_tar_end(&full).unwrap());

        let cut = dir.path().join("cut.tar");
        let bytes = std::fs::read(&full).unwrap();
        std::fs::write(&cut, &bytes[..2048]).unwrap();
        assert!(!has_tar_end(&cut).unwrap());
    }

    #[test]
    fn symlinks_folders_and_unsafe_names_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.tar"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link.tar")).unwrap();
        std::fs::create_dir(d.join("dir.tar")).unwrap();
        std::fs::write(d.join("a b.tar"), b"x").unwrap();
        std::fs::write(d.join(OsStr::from_bytes(b"caf\xe9.tar")), b"x").unwrap();
        std::fs::write(d.join(".partial.tar"), b"x").unwrap();
        std::fs::write(d.join("notes.txt"), b"x").unwrap();
        assert!(classify(&d.join("ok.tar")).unwrap().is_ok());
        assert_eq!(
            classify(&d.join("link.tar")).unwrap(),
            Err(Skip::NotRegular)
        );
        assert_eq!(classify(&d.join("dir.tar")).unwrap(), Err(Skip::NotRegular));
        assert!(matches!(
            classify(&d.join("a b.tar")).unwrap(),
            Err(Skip::UnsafeName(_))
        ));
        assert!(matches!(
            classify(&d.join(OsStr::from_bytes(b"caf\xe9.tar"))).unwrap(),
            Err(Skip::UnsafeName(_))
        ));
        assert_eq!(
            classify(&d.join(".partial.tar")).unwrap(),
            Err(Skip::NotAnArchive)
        );
        assert_eq!(
            classify(&d.join("notes.txt")).unwrap(),
            Err(Skip::NotAnArchive)
        );
    }

    #[test]
    fn opening_refuses_to_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("l.tar")).unwrap();
        assert!(open_no_follow(&dir.path().join("l.tar")).is_err());
    }

    #[test]
    fn a_file_held_open_for_writing_is_detected_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.tar");
        let mut writer = std::fs::File::create(&path).unwrap();
        writer.write_all(b"partial").unwrap();
        assert!(open_for_writing(&path));
        drop(writer);
        let _reader = std::fs::File::open(&path).unwrap();
        assert!(!open_for_writing(&path), "a reader is not a writer");
    }
}
