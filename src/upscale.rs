//! Whole-image upscaling on a burn device: tiling, optional x8 self-ensemble, alpha handling.

use crate::error::{Result, WebSrError};
use crate::image::{Picture, Planar};
use crate::models::SrModel;
use crate::resize::imresize;
use crate::tiling::{plan, Blender};
use burn::tensor::{Device, Tensor, TensorData};
use std::future::Future;

/// How to run a model over an image.
#[derive(Clone, Debug)]
pub struct UpscaleOptions {
    /// Core tile side in LR pixels; `None` runs the whole image at once.
    pub tile: Option<usize>,
    /// Overlap between neighbouring tile cores (LR pixels), blended with linear ramps.
    pub overlap: usize,
    /// Context around each tile; `None` uses the model's receptive field (exact tiling).
    pub halo: Option<usize>,
    /// x8 self-ensemble: average over the 8 flips/rotations (8x slower, a little sharper).
    pub tta: bool,
}

impl Default for UpscaleOptions {
    fn default() -> Self {
        Self {
            tile: Some(192),
            overlap: 8,
            halo: None,
            tta: false,
        }
    }
}

/// The input tensor for one RGB tile.
pub(crate) fn to_tensor(lr: &Planar, device: &Device) -> Tensor<4> {
    assert_eq!(lr.channels, 3, "model input is RGB");
    Tensor::<4>::from_data(
        TensorData::new(lr.data.clone(), [1, 3, lr.height, lr.width]),
        device,
    )
}

/// Runs the model on one RGB image that fits in memory (no tiling), synchronously.
pub fn run_model(model: &SrModel, lr: &Planar, device: &Device) -> Planar {
    pollster::block_on(run_model_async(model, lr, device)).expect("model output readback")
}

/// Runs the model on one RGB image; the read-back is awaited, which is the only way to read a
/// WebGPU buffer in the browser.
pub async fn run_model_async(model: &SrModel, lr: &Planar, device: &Device) -> Result<Planar> {
    let out = model.forward(to_tensor(lr, device));
    let [_, c, h, w] = out.dims();
    Ok(Planar::new(c, h, w, read_f32_async(out).await?))
}

/// Reads a tensor's values back as `f32`, awaiting the device (the only way to read a WebGPU
/// buffer in the browser).
pub async fn read_f32_async<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| WebSrError::Device(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| WebSrError::Invalid(format!("model output is not f32: {e:?}")))
}

/// Runs the model on one tile, optionally as the mean over the 8 dihedral transforms.
async fn run_tile(model: &SrModel, lr: &Planar, tta: bool, device: &Device) -> Result<Planar> {
    if !tta {
        return run_model_async(model, lr, device).await;
    }
    let mut sum: Option<Planar> = None;
    for k in 0..8 {
        let out = run_model_async(model, &lr.dihedral(k), device)
            .await?
            .dihedral_inverse(k);
        match &mut sum {
            None => sum = Some(out),
            Some(s) => s.data.iter_mut().zip(&out.data).for_each(|(a, b)| *a += b),
        }
    }
    let mut mean = sum.expect("8 passes");
    mean.data.iter_mut().for_each(|v| *v /= 8.0);
    Ok(mean)
}

/// Upscales an RGB image. `progress(done, total)` is called after each tile and stops the work
/// (with [`WebSrError::Cancelled`]) when it returns `false`.
pub fn upscale_rgb(
    model: &SrModel,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Planar> {
    pollster::block_on(upscale_rgb_async(model, lr, opts, device, |done, total| {
        std::future::ready(progress(done, total))
    }))
}

/// The tile loop behind [`upscale_rgb`], shared with the browser worker. `after_tile(done,
/// total)` is awaited after each tile; in the browser it reports progress and yields to the event
/// loop so that a cancel message can arrive. It returns `false` to stop.
pub async fn upscale_rgb_async<F, Fut>(
    model: &SrModel,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    mut after_tile: F,
) -> Result<Planar>
where
    F: FnMut(usize, usize) -> Fut,
    Fut: Future<Output = bool>,
{
    if lr.height == 0 || lr.width == 0 {
        return Err(WebSrError::Empty);
    }
    let tile = opts.tile.unwrap_or(usize::MAX).max(8);
    let halo = opts.halo.unwrap_or_else(|| model.receptive_radius_lr());
    let tiles = plan(lr.height, lr.width, tile, opts.overlap, halo);
    let mut blender = Blender::new(3, lr.height, lr.width, model.scale(), opts.overlap);
    for (i, t) in tiles.iter().enumerate() {
        let input = lr.crop(t.input.y, t.input.x, t.input.h, t.input.w);
        blender.add(t, &run_tile(model, &input, opts.tta, device).await?);
        if !after_tile(i + 1, tiles.len()).await {
            return Err(WebSrError::Cancelled);
        }
    }
    Ok(blender.finish())
}

/// Upscales a picture: RGB through the model, alpha (if any) with bicubic, clamped to [0, 1].
pub fn upscale_picture(
    model: &SrModel,
    pic: &Picture,
    opts: &UpscaleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Picture> {
    let rgb = upscale_rgb(model, &pic.rgb, opts, device, progress)?;
    Ok(finish_picture(rgb, pic, model.scale()))
}

/// Clamps the model's RGB output and adds the bicubic-upscaled alpha of the source, if any.
pub fn finish_picture(mut rgb: Planar, source: &Picture, scale: usize) -> Picture {
    rgb.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    let alpha = source.alpha.as_ref().map(|a| {
        let mut up = imresize(a, scale as f64);
        up.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        up
    });
    Picture { rgb, alpha }
}

/// The bicubic baseline with the same interface (no model).
pub fn bicubic_picture(pic: &Picture, scale: usize) -> Picture {
    let clamp = |mut p: Planar| {
        p.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        p
    };
    Picture {
        rgb: clamp(imresize(&pic.rgb, scale as f64)),
        alpha: pic.alpha.as_ref().map(|a| clamp(imresize(a, scale as f64))),
    }
}
