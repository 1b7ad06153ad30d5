//! File helpers shared by every writer: atomic writes and PNG encoding/decoding.
//!
//! Every output goes through one policy ([`resolve_target`]):
//! - an absent path or a regular file is written to a temporary file beside it and renamed
//!   over it, so a reader never sees half a file;
//! - a symbolic link is written *through*: the file it points to is replaced, the link stays;
//! - a character device, FIFO or socket (`/dev/stdout`, `/dev/full`, a named pipe) is written
//!   in place and never replaced by a regular file, so a full device reports its error;
//! - a folder is refused.
//!
//! Temporary files carry the writer's process id (`.mkedsl-tmp-PID-…`), so temporaries a killed
//! run left behind are recognised and removed by the next write into the same folder
//! ([`clean_stale`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};

/// The name prefix of every temporary file or folder mkedsl creates beside an output.
pub const TEMP_PREFIX: &str = ".mkedsl-tmp-";

/// How a write to a path is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Write a temporary file beside this path, then rename it over the path.
    Replace(PathBuf),
    /// Open this existing non-regular file (a device or pipe) and write into it.
    InPlace(PathBuf),
}

/// Where a write to `path` goes under the policy of this module: links followed (at most 40),
/// regular or absent files replaced, devices and pipes written in place, folders refused.
pub fn resolve_target(path: &Path) -> std::io::Result<Target> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Target::Replace(current))
            }
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(&current)?;
            current = match current.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            };
            continue;
        }
        if kind.is_file() {
            return Ok(Target::Replace(current));
        }
        if kind.is_dir() {
            return Err(std::io::Error::other(format!(
                "`{}` is a folder, not a file",
                current.display()
            )));
        }
        return Ok(Target::InPlace(current));
    }
    Err(std::io::Error::other(format!(
        "`{}` is a chain of more than 40 symbolic links",
        path.display()
    )))
}

/// The folder of a path (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary file in `dir` named after this process, after removing the temporaries of
/// processes that no longer run.
pub fn temp_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    clean_stale(dir);
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempfile_in(dir)
}

/// A temporary folder in `dir` named after this process (see [`temp_in`]).
pub fn temp_dir_in(dir: &Path) -> std::io::Result<tempfile::TempDir> {
    clean_stale(dir);
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempdir_in(dir)
}

/// Whether process `pid` may still be running: on Linux, whether `/proc/PID` exists; elsewhere
/// (no cheap answer) always yes, so nothing another run may be writing is removed.
fn may_run(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes the temporaries (files or folders named `.mkedsl-tmp-PID-…`) that processes which no
/// longer run left in `dir`: a run killed during a write. Best effort; errors are ignored.
pub fn clean_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == own || may_run(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// Makes a finished temporary file an ordinary, shareable file (temporaries are created
/// owner-only) and renames it over `path`, which must be a [`Target::Replace`] path.
pub fn persist_temp(file: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` under the policy of this module: a regular (or absent) file is
/// written to a temporary file beside it and renamed over it, so a reader never sees half a
/// file; a link is written through; a device or pipe is written in place. Creates the folder
/// if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match resolve_target(path)? {
        Target::InPlace(device) => {
            let mut file = std::fs::OpenOptions::new().write(true).open(device)?;
            file.write_all(bytes)?;
            file.flush()
        }
        Target::Replace(path) => {
            let dir = folder_of(&path);
            std::fs::create_dir_all(dir)?;
            let mut file = temp_in(dir)?;
            file.write_all(bytes)?;
            file.flush()?;
            file.as_file().sync_all()?;
            persist_temp(file, &path)
        }
    }
}

/// Whether [`write_atomic`] could write `path`, checked before any work: not a folder, and the
/// folder that would hold it (or the nearest existing one above) accepts a new file.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let Target::Replace(target) = resolve_target(path)? else {
        return Ok(());
    };
    let mut dir = folder_of(&target).to_path_buf();
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => dir = PathBuf::from("."),
        }
    }
    if !dir.is_dir() {
        return Err(std::io::Error::other(format!(
            "`{}` is not a folder",
            dir.display()
        )));
    }
    temp_in(&dir).map(drop)
}

/// The path a whole-file writer (one that writes a file by name, like the safetensors
/// serialiser) should replace: `path` itself, or the file a link points to. Devices, pipes and
/// folders are refused: such a writer cannot write into them.
pub fn replaceable(path: &Path) -> std::io::Result<PathBuf> {
    match resolve_target(path)? {
        Target::Replace(p) => Ok(p),
        Target::InPlace(p) => Err(std::io::Error::other(format!(
            "`{}` is not a regular file; mkedsl replaces only regular files",
            p.display()
        ))),
    }
}

/// Moves a finished folder `tmp` to `dest` as one unit: a reader sees the old folder or the
/// new one, never a mix of their files. An existing `dest` is first renamed to a temporary
/// name (removed afterwards, or by [`clean_stale`] if the process dies in between).
pub fn replace_dir(tmp: tempfile::TempDir, dest: &Path) -> std::io::Result<()> {
    let dir = folder_of(dest);
    let staged = tmp.keep();
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let old = temp_dir_in(dir)?.keep();
            std::fs::remove_dir(&old)?;
            std::fs::rename(dest, &old)?;
            if let Err(e) = std::fs::rename(&staged, dest) {
                let _ = std::fs::rename(&old, dest);
                let _ = std::fs::remove_dir_all(&staged);
                return Err(e);
            }
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        }
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(std::io::Error::other(format!(
                "`{}` exists and is not a folder",
                dest.display()
            )))
        }
        Err(_) => std::fs::rename(&staged, dest).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staged);
        }),
    }
}

/// PNG bytes of an RGB image, at the best compression (our 48×48 images are ~2-4 KB).
pub fn png_bytes(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )?;
    Ok(out)
}

/// Reads any image this build can decode (PNG) as RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage, image::ImageError> {
    Ok(image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()?
        .to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_and_atomic_write_replaces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut image = RgbImage::new(4, 3);
        image.put_pixel(1, 2, image::Rgb([9, 8, 7]));
        let sub = dir.path().join("sub");
        let path = sub.join("a.png");
        write_atomic(&path, &png_bytes(&image).expect("encode")).expect("write");
        assert_eq!(read_rgb(&path).expect("read"), image);
        write_atomic(&path, b"x").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read back"), b"x");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&sub).expect("list").count(), 1);
    }
}
