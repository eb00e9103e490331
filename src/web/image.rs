//! The images that cross the JS boundary: [`Image`] in (decoded here or by the browser),
//! [`Upscaled`] out (RGBA for an `ImageData`, and a lossless PNG).

use super::js_error;
use crate::error::WebSrError;
use crate::image::{decode, encode_png_image, from_dynamic, to_dynamic, Picture, MAX_INPUT_PIXELS};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

/// An image ready to upscale.
#[wasm_bindgen]
pub struct Image {
    pub(super) picture: Picture,
}

#[wasm_bindgen]
impl Image {
    /// Decodes PNG, JPEG, WebP or BMP bytes (EXIF orientation applied). Throws `DecodeError` for
    /// other formats, which the caller may then decode with the browser.
    pub fn decode(bytes: &[u8]) -> Result<Image, JsValue> {
        decode(bytes, MAX_INPUT_PIXELS)
            .map(|picture| Image { picture })
            .map_err(|e| js_error(&e))
    }

    /// Wraps non-premultiplied RGBA pixels (an `ImageData`'s `data`). Alpha is kept only when some
    /// pixel is not opaque.
    #[wasm_bindgen(js_name = fromRgba)]
    pub fn from_rgba(rgba: &[u8], width: u32, height: u32) -> Result<Image, JsValue> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Err(js_error(&WebSrError::Empty));
        }
        if (w as u64) * (h as u64) > MAX_INPUT_PIXELS {
            return Err(js_error(&WebSrError::TooLarge {
                width,
                height,
                max_pixels: MAX_INPUT_PIXELS,
            }));
        }
        if rgba.len() != 4 * w * h {
            return Err(js_error(&WebSrError::Invalid(format!(
                "{} bytes of RGBA for {width}x{height}",
                rgba.len()
            ))));
        }
        let img =
            image::RgbaImage::from_raw(width, height, rgba.to_vec()).expect("length checked above");
        let mut picture = from_dynamic(&image::DynamicImage::ImageRgba8(img));
        if rgba.chunks_exact(4).all(|px| px[3] == 255) {
            picture.alpha = None; // opaque: the result needs no alpha channel either
        }
        Ok(Image { picture })
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.picture.width() as u32
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.picture.height() as u32
    }

    #[wasm_bindgen(getter, js_name = hasAlpha)]
    pub fn has_alpha(&self) -> bool {
        self.picture.alpha.is_some()
    }
}

/// An upscaled image: RGBA pixels for an `ImageData` and a lossless PNG.
#[wasm_bindgen]
pub struct Upscaled {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    png: Vec<u8>,
}

impl Upscaled {
    /// Quantises `out` once (the PNG and the RGBA pixels are the same 8-bit image) and frees the
    /// float picture before encoding: at 32 MP it alone is 512 MiB of the wasm heap.
    pub(super) fn encode(out: Picture) -> Result<Upscaled, JsValue> {
        let (width, height) = (out.width() as u32, out.height() as u32);
        let quantised = to_dynamic(&out);
        drop(out);
        let png = encode_png_image(&quantised).map_err(|e| js_error(&e))?;
        Ok(Upscaled {
            width,
            height,
            rgba: quantised.into_rgba8().into_raw(),
            png,
        })
    }
}

#[wasm_bindgen]
impl Upscaled {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.width
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Non-premultiplied RGBA, row-major (copied into a fresh `Uint8Array`).
    #[wasm_bindgen(getter)]
    pub fn rgba(&self) -> Uint8Array {
        Uint8Array::from(&self.rgba[..])
    }

    #[wasm_bindgen(getter)]
    pub fn png(&self) -> Uint8Array {
        Uint8Array::from(&self.png[..])
    }
}

/// Non-premultiplied RGBA of a preview (no alpha: previews show the colour channels).
pub(super) fn preview_rgba(rgb: crate::image::Planar) -> Uint8Array {
    let picture = Picture { rgb, alpha: None };
    Uint8Array::from(&to_dynamic(&picture).into_rgba8().into_raw()[..])
}
