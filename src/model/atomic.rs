//! Writing files so a reader never sees half of one: a temp file in the same folder, renamed,
//! under the output policy of [`crate::data::files`] (links written through, only regular files
//! replaced, temporaries of killed runs cleaned).

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::data::files;
use crate::model::error::{ModelError, Result};

fn save_error(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Save {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A temp file beside the file `path` resolves to, to be filled and then [`persist`]ed; returns
/// the resolved path with it.
pub(crate) fn temp_beside(path: &Path) -> Result<(NamedTempFile, PathBuf)> {
    let target = files::replaceable(path).map_err(|e| save_error(path, e))?;
    let dir: PathBuf = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let tmp = files::temp_in(&dir).map_err(|e| save_error(path, e))?;
    Ok((tmp, target))
}

/// Renames the temp file over `target` (from [`temp_beside`]), readable by everyone like a
/// normally created file (temp files are created private).
pub(crate) fn persist(tmp: NamedTempFile, target: &Path) -> Result<()> {
    files::persist_temp(tmp, target).map_err(|e| save_error(target, e))
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    files::write_atomic(path, bytes).map_err(|e| save_error(path, e))
}
