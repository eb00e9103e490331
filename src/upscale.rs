//! Upscaling a whole image with any [`Model`]: the one path the CLI, the evaluation and the
//! browser worker share. A one-pass model runs tile by tile in bounded memory ([`crate::tiling`],
//! optional x8 self-ensemble); a diffusion model samples step by step
//! ([`crate::diffusion::upscale`], with previews). Either way the caller's callback is awaited
//! after each unit of work (a tile or a step), which is where the browser reports progress and
//! lets a cancel in. Alpha is upscaled with bicubic; results are clamped to `[0, 1]`.

use crate::device::{read_planar_async, to_tensor};
use crate::diffusion::upscale::Upscaling;
use crate::diffusion::{DiffusionModel, SampleOptions};
use crate::error::{Result, WebSrError};
use crate::image::{Picture, Planar, MAX_OUTPUT_PIXELS};
use crate::model::Model;
use crate::models::{wavelr_direct, SrModel, SrNet};
use crate::resize::imresize;
use crate::tiling::{plan_at_least, Blender, Tile};
use burn::tensor::Device;
use std::future::{ready, Future};

/// How to run a model over an image.
#[derive(Clone, Debug)]
pub struct UpscaleOptions {
    /// One-pass models: core tile side in LR pixels; `None` runs the whole image at once.
    pub tile: Option<usize>,
    /// One-pass models: overlap between neighbouring tile cores (LR pixels), blended with
    /// linear ramps.
    pub overlap: usize,
    /// One-pass models: context around each tile; `None` uses the model's receptive field
    /// (exact tiling).
    pub halo: Option<usize>,
    /// One-pass models: cut the image into at least this many tiles (strips when squares are
    /// too few), one per worker of a pool; it changes the plan, so compare outputs at equal
    /// values.
    pub min_tiles: usize,
    /// One-pass models: x8 self-ensemble (the 8 flips/rotations averaged: 8x slower, a little
    /// sharper).
    pub tta: bool,
    /// Diffusion models: steps, seed, eta and YODA guidance.
    pub sampling: SampleOptions,
    /// Diffusion models: a preview of the current estimate every this many steps (0: none).
    pub preview_every: usize,
}

impl Default for UpscaleOptions {
    fn default() -> Self {
        Self {
            tile: Some(192),
            overlap: 8,
            halo: None,
            min_tiles: 1,
            tta: false,
            sampling: SampleOptions::default(),
            preview_every: 0,
        }
    }
}

/// Where an upscale stands after a unit of work: `done` of `total` tiles (one-pass) or steps
/// (diffusion), and for diffusion every `preview_every` steps the current estimate.
#[derive(Debug)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub preview: Option<Planar>,
}

/// Refuses an upscale of a `width x height` input whose result would not fit in this runtime's
/// memory ([`MAX_OUTPUT_PIXELS`]), before any work.
pub fn check_output_size(width: usize, height: usize, scale: usize) -> Result<()> {
    if height == 0 || width == 0 {
        return Err(WebSrError::Empty);
    }
    let (w, h) = ((width * scale) as u64, (height * scale) as u64);
    if w * h > MAX_OUTPUT_PIXELS {
        return Err(WebSrError::OutputTooLarge {
            width: w,
            height: h,
            max_pixels: MAX_OUTPUT_PIXELS,
        });
    }
    Ok(())
}

/// Upscales an RGB image with any model. `after(progress)` is awaited after each tile or step;
/// in the browser it reports progress and yields to the event loop so that a cancel message can
/// arrive. It returns `false` to stop, with [`WebSrError::Cancelled`].
pub async fn upscale_rgb_async<F, Fut>(
    model: &Model,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    after: F,
) -> Result<Planar>
where
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = bool>,
{
    check_output_size(lr.width, lr.height, model.scale())?;
    match model {
        Model::OnePass(m) => tiled(m, lr, opts, device, after).await,
        Model::Diffusion(m) => sampled(m, lr, opts, device, after).await,
    }
}

/// [`upscale_rgb_async`] run to the end on this thread: `progress(done, total)` after each
/// tile or step, `false` to stop.
pub fn upscale_rgb(
    model: &Model,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Planar> {
    pollster::block_on(upscale_rgb_async(model, lr, opts, device, |p| {
        ready(progress(p.done, p.total))
    }))
}

/// Upscales a picture: RGB through the model, alpha (if any) with bicubic, clamped to [0, 1].
pub fn upscale_picture(
    model: &Model,
    pic: &Picture,
    opts: &UpscaleOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Picture> {
    let rgb = upscale_rgb(model, &pic.rgb, opts, device, progress)?;
    Ok(finish_picture(rgb, pic, model.scale()))
}

/// The one-pass tile loop: each tile through the network (or its x8 ensemble), blended.
async fn tiled<F, Fut>(
    model: &SrModel,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    mut after: F,
) -> Result<Planar>
where
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut job = TileJob::new(model, lr.clone(), opts);
    for i in 0..job.len() {
        let output = run_tile(model, &job.input(i), opts.tta, device).await?;
        job.add(i, &output)?;
        let progress = Progress {
            done: i + 1,
            total: job.len(),
            preview: None,
        };
        if !after(progress).await {
            return Err(WebSrError::Cancelled);
        }
    }
    job.finish()
}

/// A one-pass upscale cut into tiles that can be computed anywhere, in any order: by the loop
/// above, or by a pool of browser workers, each with its own copy of the model. The tiles are
/// blended in plan order whoever computed them, so the bytes never depend on the pool size.
pub struct TileJob {
    lr: Planar,
    tiles: Vec<Tile>,
    blender: Blender,
    scale: usize,
    /// The next tile [`TileJob::add`] accepts.
    next: usize,
}

impl TileJob {
    pub fn new(model: &SrModel, lr: Planar, opts: &UpscaleOptions) -> TileJob {
        let tile = opts.tile.unwrap_or(usize::MAX).max(8);
        let halo = opts.halo.unwrap_or_else(|| model.receptive_radius_lr());
        let tiles = plan_at_least(
            lr.height,
            lr.width,
            tile,
            opts.overlap,
            halo,
            opts.min_tiles.max(1),
        );
        let blender = Blender::new(3, lr.height, lr.width, model.scale(), opts.overlap);
        TileJob {
            lr,
            tiles,
            blender,
            scale: model.scale(),
            next: 0,
        }
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Never true: every plan has at least one tile.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// The model input of tile `i`: its core plus halo.
    pub fn input(&self, i: usize) -> Planar {
        let r = self.tiles[i].input;
        self.lr.crop(r.y, r.x, r.h, r.w)
    }

    /// Blends the model output of tile `i`; tiles must come in order (0, 1, ...), since float
    /// sums depend on their order.
    pub fn add(&mut self, i: usize, output: &Planar) -> Result<()> {
        if i != self.next || i >= self.tiles.len() {
            return Err(WebSrError::Invalid(format!(
                "tile {i} added out of order (expected tile {} of {})",
                self.next,
                self.tiles.len()
            )));
        }
        let r = self.tiles[i].input;
        let want = (3, r.h * self.scale, r.w * self.scale);
        if (output.channels, output.height, output.width) != want {
            return Err(WebSrError::Invalid(format!(
                "tile {i} output is {}x{}x{}, expected {}x{}x{}",
                output.channels, output.height, output.width, want.0, want.1, want.2
            )));
        }
        self.blender.add(&self.tiles[i], output);
        self.next += 1;
        Ok(())
    }

    /// The blended image, once every tile is in.
    pub fn finish(self) -> Result<Planar> {
        if self.next != self.tiles.len() {
            return Err(WebSrError::Invalid(format!(
                "only {} of {} tiles were added",
                self.next,
                self.tiles.len()
            )));
        }
        Ok(self.blender.finish())
    }
}

/// The diffusion step loop: one network evaluation per step, a preview every
/// `preview_every` steps (never after the last, which is the result).
async fn sampled<F, Fut>(
    model: &DiffusionModel,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &Device,
    mut after: F,
) -> Result<Planar>
where
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut job = Upscaling::start(model, lr, &opts.sampling, device)?;
    // Natively, a tiled upscale without previews samples whole tiles on flex's threads at once.
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = rayon::current_num_threads();
        if job.tiles() > 1 && threads > 1 && opts.preview_every == 0 {
            let mut step = |done, total| {
                let progress = Progress {
                    done,
                    total,
                    preview: None,
                };
                pollster::block_on(after(progress))
            };
            crate::diffusion::upscale::sample_tiles_on_threads(
                model, &mut job, device, threads, &mut step,
            )?;
            return job.finish_async().await;
        }
    }
    job.settle_async(model).await?;
    while !job.is_done() {
        job.step(model);
        job.settle_async(model).await?;
        let done = job.steps_done();
        let preview = if opts.preview_every > 0
            && done.is_multiple_of(opts.preview_every)
            && !job.is_done()
            && job.can_preview()
        {
            Some(job.preview_async().await?)
        } else {
            None
        };
        let progress = Progress {
            done,
            total: job.steps(),
            preview,
        };
        if !after(progress).await {
            return Err(WebSrError::Cancelled);
        }
    }
    job.finish_async().await
}

/// Runs a one-pass model on one RGB image that fits in memory (no tiling), synchronously.
pub fn run_model(model: &SrModel, lr: &Planar, device: &Device) -> Planar {
    pollster::block_on(run_model_async(model, lr, device)).expect("model output readback")
}

/// Runs a one-pass model on one RGB image; the read-back is awaited, which is the only way to
/// read a WebGPU buffer in the browser. WaveLR on the CPU in the browser takes the direct
/// convolution kernel ([`wavelr_direct`]).
pub async fn run_model_async(model: &SrModel, lr: &Planar, device: &Device) -> Result<Planar> {
    let out = match &model.net {
        SrNet::WaveLr(net) if wavelr_direct::applies(device) => {
            wavelr_direct::forward(net, lr, device)
        }
        _ => model.forward(to_tensor(lr, device)),
    };
    read_planar_async(out).await
}

/// Runs the model on one tile, optionally as the mean over the 8 dihedral transforms.
pub async fn run_tile(model: &SrModel, lr: &Planar, tta: bool, device: &Device) -> Result<Planar> {
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
