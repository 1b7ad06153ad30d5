//! File helpers shared by every writer: atomic writes and PNG encoding/decoding.

use std::io::Write;
use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};

/// Writes `bytes` to a temporary file in `path`'s folder and renames it over `path`, so a reader
/// never sees a half-written file. Creates the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.flush()?;
    // Temporary files are created owner-only; the result is an ordinary, shareable file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
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
