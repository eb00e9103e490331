//! Planar float images and their conversion from/to encoded files.
//!
//! Pixels are `f32` in `[0, 1]`, stored planar (`[channel][row][col]`) because every consumer
//! (resizing, metrics, tensors in NCHW) walks one plane at a time.
//! Grayscale input becomes RGB (the same value in R, G, B); an alpha channel is kept as its own
//! plane so it can be upscaled separately and never dropped.

use crate::error::{Result, WebSrError};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use std::io::Cursor;

/// Largest input image, for the CLI and the browser alike (64 megapixels): a limit so that a
/// decompression bomb gets a clear error instead of exhausting memory.
pub const MAX_INPUT_PIXELS: u64 = 64_000_000;

/// Largest result an upscale may produce, refused before any work. In the browser a wasm32 heap
/// holds at most 4 GiB, and the float accumulator, the RGBA copy and the PNG of a 32 MP result
/// already take about 1 GiB. Natively the blender, the float result and the 8-bit copy take
/// about 32 bytes per output pixel: 256 MP is 8 GiB.
pub const MAX_OUTPUT_PIXELS: u64 = if cfg!(target_arch = "wasm32") {
    32_000_000
} else {
    256_000_000
};

/// A rectangle of pixels: rows `y..y+h`, columns `x..x+w` (tiles, pruning's sub-images, crops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

/// A planar image with `channels` planes of `height * width` values each.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planar {
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), channels * height * width, "planar buffer size");
        Self {
            channels,
            height,
            width,
            data,
        }
    }

    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self::new(
            channels,
            height,
            width,
            vec![0.0; channels * height * width],
        )
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }

    pub fn plane_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.height * self.width;
        &mut self.data[c * n..(c + 1) * n]
    }

    /// A copy of the rectangle `[y0, y0+h) x [x0, x0+w)`.
    pub fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Planar {
        assert!(
            y0 + h <= self.height && x0 + w <= self.width,
            "crop out of bounds"
        );
        let mut out = Vec::with_capacity(self.channels * h * w);
        for c in 0..self.channels {
            let p = self.plane(c);
            for y in y0..y0 + h {
                out.extend_from_slice(&p[y * self.width + x0..y * self.width + x0 + w]);
            }
        }
        Planar::new(self.channels, h, w, out)
    }

    /// Rounds every value to the nearest of the 256 levels of an 8-bit image, as saving to PNG
    /// would; the evaluation protocol measures quantised images.
    pub fn quantize_u8(&mut self) {
        for v in &mut self.data {
            *v = (v.clamp(0.0, 1.0) * 255.0).round() / 255.0;
        }
    }
}

/// A decoded picture: RGB planes plus an optional alpha plane.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    pub rgb: Planar,
    pub alpha: Option<Planar>,
}

impl Picture {
    pub fn width(&self) -> usize {
        self.rgb.width
    }
    pub fn height(&self) -> usize {
        self.rgb.height
    }
}

/// Decodes PNG, JPEG, BMP or WebP bytes (format sniffed from the content), refusing images above
/// `max_pixels`, and applies the EXIF orientation.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Picture> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| WebSrError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(WebSrError::Decode(
            "not a supported image (PNG, JPEG, BMP or WebP expected)".into(),
        ));
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| WebSrError::Decode(e.to_string()))?;
    check_size(w, h, max_pixels)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| WebSrError::Decode(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let decode_err = |e: image::ImageError| WebSrError::Decode(e.to_string());
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    // Phones store photos sideways plus an EXIF orientation tag; show them the way people see them.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(from_dynamic(&img))
}

fn check_size(w: u32, h: u32, max_pixels: u64) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(WebSrError::Empty);
    }
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(WebSrError::TooLarge {
            width: w,
            height: h,
            max_pixels,
        });
    }
    Ok(())
}

/// Converts any `image` crate picture; 16-bit sources keep their precision in the floats.
pub fn from_dynamic(img: &DynamicImage) -> Picture {
    let has_alpha = img.color().has_alpha();
    let rgba = img.to_rgba32f();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let n = w * h;
    let mut rgb = vec![0.0f32; 3 * n];
    let mut alpha = if has_alpha {
        vec![0.0f32; n]
    } else {
        Vec::new()
    };
    for (i, px) in rgba.pixels().enumerate() {
        rgb[i] = px[0];
        rgb[n + i] = px[1];
        rgb[2 * n + i] = px[2];
        if has_alpha {
            alpha[i] = px[3];
        }
    }
    Picture {
        rgb: Planar::new(3, h, w, rgb),
        alpha: has_alpha.then(|| Planar::new(1, h, w, alpha)),
    }
}

/// Converts to an 8-bit RGB or RGBA image (values clamped and rounded).
pub fn to_dynamic(pic: &Picture) -> DynamicImage {
    let (w, h) = (pic.width(), pic.height());
    let n = w * h;
    let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match &pic.alpha {
        Some(a) => {
            let mut buf = Vec::with_capacity(4 * n);
            for i in 0..n {
                buf.extend_from_slice(&[
                    to_u8(pic.rgb.data[i]),
                    to_u8(pic.rgb.data[n + i]),
                    to_u8(pic.rgb.data[2 * n + i]),
                    to_u8(a.data[i]),
                ]);
            }
            DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w as u32, h as u32, buf).unwrap())
        }
        None => {
            let mut buf = Vec::with_capacity(3 * n);
            for i in 0..n {
                buf.extend_from_slice(&[
                    to_u8(pic.rgb.data[i]),
                    to_u8(pic.rgb.data[n + i]),
                    to_u8(pic.rgb.data[2 * n + i]),
                ]);
            }
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w as u32, h as u32, buf).unwrap())
        }
    }
}

/// Encodes as lossless PNG.
pub fn encode_png(pic: &Picture) -> Result<Vec<u8>> {
    encode_png_image(&to_dynamic(pic))
}

/// Encodes an already quantised image as lossless PNG.
pub fn encode_png_image(img: &DynamicImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| WebSrError::Encode(e.to_string()))?;
    Ok(out)
}

/// Reads and decodes a file (default pixel limit).
pub fn load(path: impl AsRef<std::path::Path>) -> Result<Picture> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| WebSrError::io(path, e))?;
    decode_read(path, &bytes)
}

/// Decodes the `bytes` already read from `path` (default pixel limit; errors name the file).
pub fn decode_read(path: &std::path::Path, bytes: &[u8]) -> Result<Picture> {
    decode(bytes, MAX_INPUT_PIXELS)
        .map_err(|e| WebSrError::Decode(format!("{}: {e}", path.display())))
}

/// Saves in the format implied by the extension (PNG when in doubt).
pub fn save(pic: &Picture, path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path).unwrap_or(ImageFormat::Png);
    let img = to_dynamic(pic);
    // JPEG has no alpha: flatten instead of failing.
    let img = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(img.to_rgb8())
    } else {
        img
    };
    img.save_with_format(path, format)
        .map_err(|e| WebSrError::Encode(format!("{}: {e}", path.display())))
}

/// The 8 symmetries of the square (flips and 90-degree rotations), used for training
/// augmentation and the x8 self-ensemble. Index bits: 1 = flip left-right, 2 = flip up-down,
/// 4 = transpose (applied in that order).
impl Planar {
    pub fn dihedral(&self, k: usize) -> Planar {
        let mut out = self.clone();
        if k & 1 != 0 {
            out = out.flip_lr();
        }
        if k & 2 != 0 {
            out = out.flip_ud();
        }
        if k & 4 != 0 {
            out = out.transpose();
        }
        out
    }

    /// Undoes [`Planar::dihedral`] with the same `k`.
    pub fn dihedral_inverse(&self, k: usize) -> Planar {
        let mut out = self.clone();
        if k & 4 != 0 {
            out = out.transpose();
        }
        if k & 2 != 0 {
            out = out.flip_ud();
        }
        if k & 1 != 0 {
            out = out.flip_lr();
        }
        out
    }

    fn flip_lr(&self) -> Planar {
        let mut out = self.clone();
        for c in 0..self.channels {
            for row in out.plane_mut(c).chunks_exact_mut(self.width) {
                row.reverse();
            }
        }
        out
    }

    fn flip_ud(&self) -> Planar {
        let mut out = Planar::zeros(self.channels, self.height, self.width);
        for c in 0..self.channels {
            let src = self.plane(c);
            let dst = out.plane_mut(c);
            for y in 0..self.height {
                let sy = self.height - 1 - y;
                dst[y * self.width..(y + 1) * self.width]
                    .copy_from_slice(&src[sy * self.width..(sy + 1) * self.width]);
            }
        }
        out
    }

    fn transpose(&self) -> Planar {
        let mut out = Planar::zeros(self.channels, self.width, self.height);
        for c in 0..self.channels {
            let src = self.plane(c);
            let dst = out.plane_mut(c);
            for y in 0..self.height {
                for x in 0..self.width {
                    dst[x * self.height + y] = src[y * self.width + x];
                }
            }
        }
        out
    }
}
