//! Writing files so a reader never sees half of one: a temp file in the same folder, renamed.

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::model::error::{ModelError, Result};

fn save_error(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Save {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A temp file in `path`'s folder, to be filled and then [`persist`]ed over `path`.
pub(crate) fn temp_beside(path: &Path) -> Result<NamedTempFile> {
    let dir: PathBuf = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    NamedTempFile::new_in(&dir).map_err(|e| save_error(path, e))
}

/// Renames the temp file over `path`, readable by everyone like a normally created file
/// (temp files are created private).
pub(crate) fn persist(tmp: NamedTempFile, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| save_error(path, e))?;
    }
    tmp.persist(path).map_err(|e| save_error(path, e))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| save_error(path, e))?;
    persist(tmp, path)
}
