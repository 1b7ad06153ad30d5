//! Image preprocessing exactly as Hugging Face's (slow) `CLIPImageProcessor` does it.
//!
//! Steps, each switchable by `preprocessor_config.json`: convert to RGB, resize (shortest edge,
//! or a fixed height × width) with PIL's resampling filters, center crop, rescale, normalise,
//! channels first. The resampling is Pillow's own algorithm (separable, antialiased, 8-bit
//! fixed-point with an 8-bit intermediate image) so pixel values match Hugging Face's bit for
//! bit; the `image` crate's filters differ by a grey level here and there.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde::Deserialize;

use crate::model::error::{ModelError, Result};

const OPENAI_CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// A Pillow resampling filter (`resample` in the config: 1 lanczos, 2 bilinear, 3 bicubic,
/// 4 box, 5 hamming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    fn from_pil(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }

    fn pil_code(self) -> u32 {
        match self {
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        };
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => (1.0 - x.abs()).max(0.0),
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let y = x * PI;
                    y.sin() / y * (0.54 + 0.46 * y.cos())
                }
            }
            Self::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if x > -3.0 && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Target size of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Shortest edge to this many pixels, aspect ratio kept (the longer edge truncated).
    ShortestEdge(usize),
    /// Exactly `height × width`.
    Exact { height: usize, width: usize },
}

/// A parsed `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    pub convert_rgb: bool,
    pub resize: Option<Resize>,
    pub filter: Filter,
    /// `(height, width)` of the center crop.
    pub crop: Option<(usize, usize)>,
    pub rescale: Option<f64>,
    /// Per-channel `(mean, std)`.
    pub normalize: Option<([f64; 3], [f64; 3])>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(usize),
    Map(HashMap<String, usize>),
}

#[derive(Deserialize)]
#[serde(default)]
struct RawConfig {
    do_convert_rgb: bool,
    do_resize: bool,
    size: Option<SizeField>,
    resample: u32,
    do_center_crop: bool,
    crop_size: Option<SizeField>,
    do_rescale: bool,
    rescale_factor: f64,
    do_normalize: bool,
    image_mean: Vec<f64>,
    image_std: Vec<f64>,
}

impl Default for RawConfig {
    /// `CLIPImageProcessor`'s defaults, which published configs may omit.
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: None,
            resample: 3,
            do_center_crop: true,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN.to_vec(),
            image_std: OPENAI_CLIP_STD.to_vec(),
        }
    }
}

/// Name of the preprocessing config in a checkpoint folder.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

impl ImageProcessor {
    /// The CLIP preprocessing for square images of side `size` (what a fresh model is saved with).
    pub fn clip(size: usize) -> Self {
        Self {
            convert_rgb: true,
            resize: Some(Resize::ShortestEdge(size)),
            filter: Filter::Bicubic,
            crop: Some((size, size)),
            rescale: Some(1.0 / 255.0),
            normalize: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
        }
    }

    /// Reads `preprocessor_config.json` from a checkpoint folder (or the file itself).
    pub fn from_path(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join(PREPROCESSOR_FILE)
        } else {
            path.to_path_buf()
        };
        let shown = file.display().to_string();
        if !file.is_file() {
            return Err(ModelError::MissingFile {
                path: shown,
                what: "image processor config",
                help:
                    "a LLaVA checkpoint folder holds preprocessor_config.json next to config.json"
                        .into(),
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|cause| ModelError::Io {
            path: shown.clone(),
            cause,
        })?;
        Self::from_json(&text, &shown)
    }

    /// Parses the JSON text; `path` is only used in messages.
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        let bad = |reason: String| ModelError::Preprocessor {
            path: path.to_string(),
            reason,
        };
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let resize = if raw.do_resize {
            Some(match raw.size {
                None => Resize::ShortestEdge(224),
                Some(SizeField::Int(n)) => Resize::ShortestEdge(n),
                Some(SizeField::Map(m)) => {
                    match (m.get("shortest_edge"), m.get("height"), m.get("width")) {
                        (Some(&s), _, _) => Resize::ShortestEdge(s),
                        (None, Some(&height), Some(&width)) => Resize::Exact { height, width },
                        _ => {
                            return Err(bad(
                                "`size` needs `shortest_edge`, or `height` and `width`".into(),
                            ))
                        }
                    }
                }
            })
        } else {
            None
        };
        let crop = if raw.do_center_crop {
            Some(match raw.crop_size {
                None => (224, 224),
                Some(SizeField::Int(n)) => (n, n),
                Some(SizeField::Map(m)) => match (m.get("height"), m.get("width")) {
                    (Some(&h), Some(&w)) => (h, w),
                    _ => return Err(bad("`crop_size` needs `height` and `width`".into())),
                },
            })
        } else {
            None
        };
        let sizes_positive = match resize {
            Some(Resize::ShortestEdge(s)) => s > 0,
            Some(Resize::Exact { height, width }) => height > 0 && width > 0,
            None => true,
        } && crop.is_none_or(|(h, w)| h > 0 && w > 0);
        if !sizes_positive {
            return Err(bad("`size` and `crop_size` must be positive".into()));
        }
        let filter = Filter::from_pil(raw.resample).ok_or_else(|| {
            bad(format!(
                "`resample` {} is not a supported PIL filter (1-5)",
                raw.resample
            ))
        })?;
        let three = |v: &[f64], name: &str| -> Result<[f64; 3]> {
            <[f64; 3]>::try_from(v)
                .map_err(|_| bad(format!("`{name}` must hold 3 numbers, one per channel")))
        };
        let normalize = if raw.do_normalize {
            let std = three(&raw.image_std, "image_std")?;
            if std.contains(&0.0) {
                return Err(bad("`image_std` must not contain 0".into()));
            }
            Some((three(&raw.image_mean, "image_mean")?, std))
        } else {
            None
        };
        Ok(Self {
            convert_rgb: raw.do_convert_rgb,
            resize,
            filter,
            crop,
            rescale: raw.do_rescale.then_some(raw.rescale_factor),
            normalize,
        })
    }

    /// The config in Hugging Face's format, for saving next to a model.
    pub fn to_json(&self) -> serde_json::Value {
        let (mean, std) = self
            .normalize
            .unwrap_or((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD));
        let size = match self.resize {
            Some(Resize::Exact { height, width }) => {
                serde_json::json!({"height": height, "width": width})
            }
            Some(Resize::ShortestEdge(s)) => serde_json::json!({"shortest_edge": s}),
            None => serde_json::json!({"shortest_edge": 224}),
        };
        let (ch, cw) = self.crop.unwrap_or((224, 224));
        serde_json::json!({
            "image_processor_type": "CLIPImageProcessor",
            "processor_class": "LlavaProcessor",
            "do_convert_rgb": self.convert_rgb,
            "do_resize": self.resize.is_some(),
            "size": size,
            "resample": self.filter.pil_code(),
            "do_center_crop": self.crop.is_some(),
            "crop_size": {"height": ch, "width": cw},
            "do_rescale": self.rescale.is_some(),
            "rescale_factor": self.rescale.unwrap_or(1.0 / 255.0),
            "do_normalize": self.normalize.is_some(),
            "image_mean": mean,
            "image_std": std,
        })
    }

    /// Preprocesses one image into `(3, H, W)` f32 on the CPU.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Tensor> {
        let rgb = match image {
            DynamicImage::ImageRgb8(rgb) => rgb.clone(),
            _ if self.convert_rgb => image.to_rgb8(),
            _ => {
                return Err(ModelError::Image {
                    path: "<input>".into(),
                    reason: format!(
                        "the image is {:?}, not 8-bit RGB, and do_convert_rgb is false",
                        image.color()
                    ),
                })
            }
        };
        let mut rgb = rgb;
        if let Some(resize) = self.resize {
            let (h, w) = output_size(resize, rgb.height() as usize, rgb.width() as usize);
            rgb = pil_resize(&rgb, w, h, self.filter);
        }
        if let Some((ch, cw)) = self.crop {
            rgb = center_crop(&rgb, ch, cw);
        }
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let mut data = vec![0f32; 3 * h * w];
        for (x, y, px) in rgb.enumerate_pixels() {
            for c in 0..3 {
                let mut v = match self.rescale {
                    Some(scale) => (f64::from(px.0[c]) * scale) as f32,
                    None => f32::from(px.0[c]),
                };
                if let Some((mean, std)) = self.normalize {
                    v = (v - mean[c] as f32) / std[c] as f32;
                }
                data[c * h * w + y as usize * w + x as usize] = v;
            }
        }
        Ok(Tensor::from_vec(data, (3, h, w), &Device::Cpu)?)
    }
}

/// Loads an image file.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    image::open(path).map_err(|e| ModelError::Image {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// `(height, width)` after resizing, as transformers' `get_resize_output_image_size`.
fn output_size(resize: Resize, height: usize, width: usize) -> (usize, usize) {
    match resize {
        Resize::Exact { height, width } => (height, width),
        Resize::ShortestEdge(size) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            let new_long = ((size * long) as f64 / short.max(1) as f64) as usize;
            if width <= height {
                (new_long, size)
            } else {
                (size, new_long)
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output pixel, the first
/// input pixel and fixed-point weights.
fn coefficients(
    in_size: usize,
    out_size: usize,
    filter: Filter,
) -> (Vec<(usize, usize)>, Vec<Vec<i32>>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
        let count = xmax.saturating_sub(xmin);
        let raw: Vec<f64> = (0..count)
            .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&k| {
                let k = if total != 0.0 { k / total } else { k };
                let scaled = k * f64::from(1u32 << PRECISION_BITS);
                if k < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                }
            })
            .collect();
        bounds.push((xmin, count));
        weights.push(fixed);
    }
    (bounds, weights)
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's two-pass resampling (horizontal, then vertical, each rounded to 8 bits).
fn pil_resize(src: &RgbImage, out_w: usize, out_h: usize, filter: Filter) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let mut img = src.clone();
    if out_w != in_w {
        let (bounds, weights) = coefficients(in_w, out_w, filter);
        let mut out = RgbImage::new(out_w as u32, in_h as u32);
        for y in 0..in_h {
            for (xx, ((xmin, count), k)) in bounds.iter().zip(&weights).enumerate() {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (x, w) in k.iter().enumerate().take(*count) {
                    let px = img.get_pixel((xmin + x) as u32, y as u32).0;
                    for (a, p) in acc.iter_mut().zip(px) {
                        *a += i32::from(p) * w;
                    }
                }
                out.put_pixel(
                    xx as u32,
                    y as u32,
                    image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
                );
            }
        }
        img = out;
    }
    if out_h != in_h {
        let (bounds, weights) = coefficients(in_h, out_h, filter);
        let w = img.width();
        let mut out = RgbImage::new(w, out_h as u32);
        for (yy, ((ymin, count), k)) in bounds.iter().zip(&weights).enumerate() {
            for x in 0..w {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (y, w) in k.iter().enumerate().take(*count) {
                    let px = img.get_pixel(x, (ymin + y) as u32).0;
                    for (a, p) in acc.iter_mut().zip(px) {
                        *a += i32::from(p) * w;
                    }
                }
                out.put_pixel(
                    x,
                    yy as u32,
                    image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
                );
            }
        }
        img = out;
    }
    img
}

/// transformers' `center_crop`: floor-centred, zero-padding an image smaller than the crop.
fn center_crop(src: &RgbImage, ch: usize, cw: usize) -> RgbImage {
    let (h, w) = (src.height() as i64, src.width() as i64);
    let (ch_i, cw_i) = (ch as i64, cw as i64);
    // Offset of the crop's top-left corner in source coordinates (negative: padding).
    let top = if h >= ch_i {
        (h - ch_i).div_euclid(2)
    } else {
        -((ch_i - h + 1) / 2)
    };
    let left = if w >= cw_i {
        (w - cw_i).div_euclid(2)
    } else {
        -((cw_i - w + 1) / 2)
    };
    let mut out = RgbImage::new(cw as u32, ch as u32);
    for y in 0..ch_i {
        for x in 0..cw_i {
            let (sy, sx) = (top + y, left + x);
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
                out.put_pixel(x as u32, y as u32, *src.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_truncates_the_long_edge() {
        assert_eq!(output_size(Resize::ShortestEdge(28), 23, 37), (28, 45));
        assert_eq!(output_size(Resize::ShortestEdge(28), 90, 60), (42, 28));
        assert_eq!(
            output_size(
                Resize::Exact {
                    height: 5,
                    width: 7
                },
                90,
                60
            ),
            (5, 7)
        );
    }

    #[test]
    fn constant_image_normalises_by_hand() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, image::Rgb([255, 0, 128])));
        let t = ImageProcessor::clip(28).preprocess(&img).unwrap();
        assert_eq!(t.dims(), &[3, 28, 28]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Resampling a constant image keeps it constant; then (x/255 - mean) / std.
        let expected = [
            (1.0 - 0.481_454_66) / 0.268_629_54,
            (0.0 - 0.457_827_5) / 0.261_302_58,
            (128.0 / 255.0 - 0.408_210_73) / 0.275_777_11,
        ];
        for c in 0..3 {
            for &x in &v[c * 784..(c + 1) * 784] {
                assert!(
                    (f64::from(x) - expected[c]).abs() < 1e-5,
                    "channel {c}: {x}"
                );
            }
        }
    }

    #[test]
    fn crop_larger_than_image_pads_with_zeros_centred() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9]));
        let out = center_crop(&img, 4, 5);
        // Padding: top ceil(2/2) = 1, left ceil(3/2) = 2.
        assert_eq!(out.get_pixel(2, 1).0, [9, 9, 9]);
        assert_eq!(out.get_pixel(3, 2).0, [9, 9, 9]);
        assert_eq!(out.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(4, 2).0, [0, 0, 0]);
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = ImageProcessor::from_json(r#"{"image_mean": [0.5, 0.5]}"#, "p.json").unwrap_err();
        assert!(err.to_string().contains("image_mean"), "{err}");
        let err = ImageProcessor::from_json(r#"{"resample": 0}"#, "p.json").unwrap_err();
        assert!(err.to_string().contains("resample"), "{err}");
        let parsed =
            ImageProcessor::from_json(&ImageProcessor::clip(28).to_json().to_string(), "p.json")
                .unwrap();
        assert_eq!(parsed, ImageProcessor::clip(28));
    }
}
