//! The record of an in-progress multipart upload in the state folder (resume after a restart).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Progress record of a multipart upload (JSON in the state folder).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadRecord {
    pub key: String,
    pub upload_id: String,
    pub size: u64,
    pub mtime_ns: u128,
    pub part_size: u64,
    /// An encrypted upload: never resumed, only aborted (records written before encryption
    /// existed read as `false`).
    #[serde(default)]
    pub encrypted: bool,
}

pub(crate) fn read_record(path: &Path) -> Option<UploadRecord> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

pub(crate) fn write_record(
    path: &Path,
    record: &UploadRecord,
) -> Result<(), crate::upload::UploadError> {
    let fail = |source| crate::upload::UploadError::State {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(record).map_err(|e| fail(std::io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&body).map_err(fail)?;
        f.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}
