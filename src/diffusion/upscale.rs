//! Diffusion upscaling of an image of any size: pad the LR input so the diffused signal fits the
//! U-Net (edge replication), sample it whole or in overlapping tiles step by step, blend, crop
//! back. Each tile draws the noise the whole image has there ([`super::noise::NoiseField`]), so
//! the tiles share one noise and the blend hides only the U-Net's context at their borders.
//! [`Upscaling`] is the stepwise form that [`crate::upscale`] drives for every caller
//! (previews, progress, cancel). A tiled upscale can also hand its tiles out as [`TileTask`]s
//! that any holder of the same model samples ([`sample_tile_async`]: the browser's CPU pool) and
//! take the outputs back in plan order ([`Upscaling::add_sampled`]): the same bytes as sampling
//! them here, because a tile's run depends only on its task.

use super::model::{DiffusionModel, SampleOptions, TileImportance};
use super::sampler::{SamplingRun, Window};
use crate::device::{read_f32_async, to_tensor};
use crate::error::{Result, WebSrError};
use crate::image::Planar;
use crate::tiling::{plan, Blender, Tile};
use burn::tensor::{Device, Tensor, TensorData};
use std::future::Future;

/// The largest LR input sampled whole by default: diffusion runs the U-Net on the full image at
/// every step, and its activations grow with the pixels (about 256 MB on the CPU at this size).
/// Larger images are sampled in tiles.
pub const MAX_LR_PIXELS: usize = 256 * 256;

/// The default tile side (LR pixels) above [`MAX_LR_PIXELS`].
pub const DEFAULT_TILE: usize = 128;

/// Overlap of neighbouring tile cores, blended with linear ramps, and context sampled around
/// each core (LR pixels, before rounding up to the model's multiple). Unlike a one-pass model's
/// tiles these change the result a little: a tile's U-Net sees only its own context.
const TILE_OVERLAP: usize = 16;
const TILE_HALO: usize = 8;

/// A diffusion upscale in progress: one sampling run per tile of the edge-padded image (one tile
/// for an image sampled whole), each drawing the noise the whole image has there; finished
/// tiles are blended into the output.
pub struct Upscaling {
    opts: SampleOptions,
    /// The LR image, edge-padded to the model's multiple; tiles are cut from it.
    padded: Planar,
    tiles: Vec<Tile>,
    /// The tile being sampled (`run`) or the next to start.
    tile: usize,
    run: Option<SamplingRun>,
    steps_per_tile: usize,
    steps_done: usize,
    /// `None` when the image is one tile: its run is the result (and can be previewed).
    blender: Option<Blender>,
    /// With YODA in tiles: the whole image's importance map (one normalisation for all tiles)
    /// and each tile's largest value once read back.
    importance: Option<Tensor<4>>,
    tile_max: Vec<Option<f32>>,
    /// Whether to read the tiles' maxima (and so skip YODA's empty steps).
    skip_idle: bool,
    /// Network evaluations of the finished tiles.
    evaluations_done: usize,
    device: Device,
    scale: usize,
    /// Output size before padding.
    out_h: usize,
    out_w: usize,
}

/// `lr` with its last row and column repeated up to `h x w`.
fn pad_edge(lr: &Planar, h: usize, w: usize) -> Planar {
    let mut out = Planar::zeros(lr.channels, h, w);
    for c in 0..lr.channels {
        let src = lr.plane(c);
        let dst = out.plane_mut(c);
        for y in 0..h {
            let sy = y.min(lr.height - 1);
            for x in 0..w {
                dst[y * w + x] = src[sy * lr.width + x.min(lr.width - 1)];
            }
        }
    }
    out
}

/// The side multiple of an LR input whose diffused signal fits the U-Net.
fn lr_multiple(model: &DiffusionModel) -> usize {
    // HR sides must be multiples of `m`, so LR sides of `m / gcd(m, scale)`.
    let (m, s) = (model.spec.hr_multiple(), model.scale());
    m / gcd(m, s)
}

/// `lr` checked and edge-padded so the diffused signal fits the U-Net.
fn padded(model: &DiffusionModel, lr: &Planar) -> Result<Planar> {
    if lr.height == 0 || lr.width == 0 {
        return Err(WebSrError::Empty);
    }
    let [h, w] = padded_size(model, lr.height, lr.width);
    Ok(pad_edge(lr, h, w))
}

/// The sides an `h x w` LR input is edge-padded to so its diffused signal fits the U-Net.
fn padded_size(model: &DiffusionModel, h: usize, w: usize) -> [usize; 2] {
    let m = lr_multiple(model);
    [h.div_ceil(m) * m, w.div_ceil(m) * m]
}

/// A finished tile run's output read back: planar RGB, `scale` times its `[h, w]` LR input.
async fn read_tile_output(run: SamplingRun, [h, w]: [usize; 2], scale: usize) -> Result<Planar> {
    let values = read_f32_async(run.finish()).await?;
    Ok(Planar::new(3, h * scale, w * scale, values))
}

/// `padded` for an image small enough to sample whole, as a tensor.
fn padded_input(model: &DiffusionModel, lr: &Planar, device: &Device) -> Result<Tensor<4>> {
    if lr.height * lr.width > MAX_LR_PIXELS {
        return Err(WebSrError::Invalid(format!(
            "this samples the whole image at once and takes inputs up to {} pixels; this one \
             is {}x{}",
            MAX_LR_PIXELS, lr.width, lr.height
        )));
    }
    Ok(to_tensor(&padded(model, lr)?, device))
}

/// The tiles of a padded `h x w` image for a tile side `tile`: every input rect a multiple of
/// `m` (the plan's sizes and the padded sides are), one tile when it fits.
/// Returns the tiles and their cores' overlap.
fn diffusion_tiles(h: usize, w: usize, tile: usize, m: usize) -> (Vec<Tile>, usize) {
    let up = |v: usize| v.div_ceil(m) * m;
    // A tile beyond the image is the image (and any size a caller asks for stays in range).
    let (tile, halo) = (up(tile.clamp(m, h.max(w).max(m))), up(TILE_HALO));
    if h <= tile && w <= tile {
        return (plan(h, w, tile, 0, 0), 0);
    }
    // The plan halves an overlap above half the tile; keep it a multiple of m.
    let overlap = up(TILE_OVERLAP).min(tile / 2 / m * m);
    (plan(h, w, tile, overlap, halo), overlap)
}

/// DiWa's initial prediction alone (what its diffusion adds a residual to), for an RGB image;
/// `None` for SR3, which has none.
pub fn initial_prediction_rgb(
    model: &DiffusionModel,
    lr: &Planar,
    device: &Device,
) -> Result<Option<Planar>> {
    let Some(image) = model.initial_prediction(padded_input(model, lr, device)?) else {
        return Ok(None);
    };
    let (h, w) = (lr.height * model.scale(), lr.width * model.scale());
    let image = image.narrow(2, 0, h).narrow(3, 0, w);
    let values = pollster::block_on(read_f32_async(image))?;
    Ok(Some(Planar::new(3, h, w, values)))
}

/// The tiles of an `h x w` LR image padded to `padded` (`[h, w]`) and their overlap: the tile
/// side `opts` asks for, or the whole image up to [`MAX_LR_PIXELS`], else [`DEFAULT_TILE`].
fn tiles_for(
    model: &DiffusionModel,
    opts: &SampleOptions,
    [h, w]: [usize; 2],
    padded: [usize; 2],
) -> (Vec<Tile>, usize) {
    let tile = match opts.tile {
        Some(t) => t,
        None if h * w <= MAX_LR_PIXELS => padded[0].max(padded[1]),
        None => DEFAULT_TILE,
    };
    diffusion_tiles(padded[0], padded[1], tile, lr_multiple(model))
}

/// How many tiles an `h x w` LR image is sampled in with `opts` (1: whole, with previews).
pub fn tile_count(model: &DiffusionModel, h: usize, w: usize, opts: &SampleOptions) -> usize {
    let padded = padded_size(model, h.max(1), w.max(1));
    tiles_for(model, opts, [h, w], padded).0.len()
}

/// One tile of a tiled upscale as any holder of the same model samples it
/// ([`sample_tile_async`]): its LR input, its place in the whole padded image (which fixes the
/// noise it draws) and, with YODA, its slice of the whole image's importance map.
#[derive(Clone, Debug)]
pub struct TileTask {
    pub input: Planar,
    pub window: Window,
    pub importance: Option<ImportanceSlice>,
}

/// A tile's slice of YODA's importance map (diffused pixels), as plain values.
#[derive(Clone, Debug)]
pub struct ImportanceSlice {
    /// `[channels, height, width]`.
    pub dims: [usize; 3],
    pub values: Vec<f32>,
}

impl ImportanceSlice {
    /// The slice's largest value: a tile whose mask stays empty skips those steps, exactly as
    /// the tile would sampled in place.
    fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// The slice as the sampler takes it, checked against the map of a tile diffused at `size`
    /// (one channel), so a malformed task is refused instead of failing inside the network.
    fn to_tile_importance(&self, size: [usize; 2], device: &Device) -> Result<TileImportance> {
        let [c, h, w] = self.dims;
        if [c, h, w] != [1, size[0], size[1]] || self.values.len() != c * h * w {
            return Err(WebSrError::Invalid(format!(
                "a tile diffused at {}x{} needs a 1x{}x{} importance slice, got {c}x{h}x{w} \
                 with {} values",
                size[0],
                size[1],
                size[0],
                size[1],
                self.values.len()
            )));
        }
        let data = TensorData::new(self.values.clone(), [1, c, h, w]);
        Ok(TileImportance {
            map: Tensor::<4>::from_data(data, device),
            max: Some(self.max()),
        })
    }
}

/// Samples one [`TileTask`] on `device` (the options must be the coordinator's), awaiting
/// `after_step(done, total)` after every step (`false` stops with [`WebSrError::Cancelled`]).
/// Returns the tile's output (planar RGB, `scale` times its input) and its network evaluations.
pub async fn sample_tile_async<F, Fut>(
    model: &DiffusionModel,
    task: &TileTask,
    opts: &SampleOptions,
    device: &Device,
    mut after_step: F,
) -> Result<(Planar, usize)>
where
    F: FnMut(usize, usize) -> Fut,
    Fut: Future<Output = bool>,
{
    opts.validate()?;
    let (m, input) = (lr_multiple(model), &task.input);
    let fits = |v: usize| v > 0 && v.is_multiple_of(m);
    if input.channels != 3 || !fits(input.height) || !fits(input.width) {
        return Err(WebSrError::Invalid(format!(
            "a tile input must be RGB with sides a multiple of {m}; this one is {}x{}x{}",
            input.channels, input.height, input.width
        )));
    }
    let importance = match &task.importance {
        Some(slice) => {
            let size = model.diffused_size(input.height, input.width);
            Some(slice.to_tile_importance(size, device)?)
        }
        None => None,
    };
    let tensor = to_tensor(input, device);
    let mut run = model.start_sampling_window(tensor, opts, Some(task.window), importance);
    let total = model.steps_for(opts);
    let mut done = 0;
    while !run.is_done() {
        model.step(&mut run);
        done += 1;
        if !after_step(done, total).await {
            return Err(WebSrError::Cancelled);
        }
    }
    let evaluations = run.evaluations();
    let size = [input.height, input.width];
    Ok((
        read_tile_output(run, size, model.scale()).await?,
        evaluations,
    ))
}

/// Natively: samples the tiles of a tiled `job` (not yet stepped) on `threads` threads, each
/// taking whole tiles as they become free, as the browser's worker pool does, and blends them in
/// plan order here, so the bytes are those of sampling them in place. `after_step(done, total)`
/// runs on this thread after every step of any tile (`false` stops every thread between steps
/// with [`WebSrError::Cancelled`]; it still hears the steps the threads were in). Threads share
/// the network evaluations of different tiles, which a single sample's small tensors do not keep
/// busy.
#[cfg(not(target_arch = "wasm32"))]
pub fn sample_tiles_on_threads(
    model: &DiffusionModel,
    job: &mut Upscaling,
    device: &Device,
    threads: usize,
    after_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<()> {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::mpsc;

    /// What a sampling thread reports to the blending one.
    enum Event {
        Step,
        Tile(usize, Result<(Planar, usize)>),
    }

    let tasks = pollster::block_on(job.tile_tasks_async(model))?;
    let opts = job.opts.clone();
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (total, mut done, mut failure) = (job.steps(), 0, None);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, tasks.len()) {
            let (tx, tasks, opts, next, stop) = (tx.clone(), &tasks, &opts, &next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= tasks.len() || stop.load(Relaxed) {
                    break;
                }
                let step = |_, _| {
                    let _ = tx.send(Event::Step);
                    std::future::ready(!stop.load(Relaxed))
                };
                let sampled = sample_tile_async(model, &tasks[i], opts, device, step);
                let _ = tx.send(Event::Tile(i, pollster::block_on(sampled)));
            });
        }
        drop(tx);
        let mut outputs = BTreeMap::new();
        for event in rx {
            let outcome = match event {
                Event::Step => {
                    done += 1;
                    match after_step(done, total) {
                        true => Ok(()),
                        false => Err(WebSrError::Cancelled),
                    }
                }
                Event::Tile(i, sampled) => sampled.and_then(|out| {
                    outputs.insert(i, out);
                    while let Some((output, evaluations)) = outputs.remove(&job.tile) {
                        job.add_sampled(job.tile, &output, evaluations)?;
                    }
                    Ok(())
                }),
            };
            if let Err(e) = outcome {
                stop.store(true, Relaxed);
                failure.get_or_insert(e);
            }
        }
    });
    failure.map_or(Ok(()), Err)
}

impl Upscaling {
    /// Starts upscaling the RGB image `lr` (values in `[0, 1]`): whole when `opts.tile` is unset
    /// and it is at most [`MAX_LR_PIXELS`], else in tiles.
    pub fn start(
        model: &DiffusionModel,
        lr: &Planar,
        opts: &SampleOptions,
        device: &Device,
    ) -> Result<Upscaling> {
        opts.validate()?;
        let padded = padded(model, lr)?;
        let size = [lr.height, lr.width];
        let (tiles, overlap) = tiles_for(model, opts, size, [padded.height, padded.width]);
        let blender = (tiles.len() > 1)
            .then(|| Blender::new(3, padded.height, padded.width, model.scale(), overlap));
        let importance = (opts.yoda && tiles.len() > 1)
            .then(|| model.importance_map(to_tensor(&padded, device)));
        let mut job = Upscaling {
            opts: opts.clone(),
            tile_max: vec![None; tiles.len()],
            padded,
            tiles,
            tile: 0,
            run: None,
            steps_per_tile: model.steps_for(opts),
            steps_done: 0,
            blender,
            importance,
            skip_idle: true,
            evaluations_done: 0,
            device: device.clone(),
            scale: model.scale(),
            out_h: lr.height * model.scale(),
            out_w: lr.width * model.scale(),
        };
        if job.tiles.len() == 1 {
            job.start_tile(model);
        }
        Ok(job)
    }

    /// This upscale running every step of every tile, even those YODA's mask leaves empty (the
    /// same image, slower: for benchmarks and tests of the skipping).
    pub fn without_skipping(self) -> Self {
        Upscaling {
            skip_idle: false,
            ..self
        }
    }

    /// Tile `i`'s slice of the whole image's importance map (diffused pixels).
    fn importance_of(&self, model: &DiffusionModel, i: usize) -> Option<Tensor<4>> {
        let r = self.tiles[i].input;
        let ([y, x], [h, w]) = (model.diffused_size(r.y, r.x), model.diffused_size(r.h, r.w));
        let map = self.importance.as_ref()?;
        Some(map.clone().narrow(2, y, h).narrow(3, x, w))
    }

    /// Tile `i`'s place in the whole padded image.
    fn window_of(&self, i: usize) -> Window {
        let r = self.tiles[i].input;
        Window {
            whole: [self.padded.height, self.padded.width],
            origin: [r.y, r.x],
        }
    }

    /// Starts the run of the current tile, drawing the noise the whole image has there.
    fn start_tile(&mut self, model: &DiffusionModel) {
        let r = self.tiles[self.tile].input;
        let input = to_tensor(&self.padded.crop(r.y, r.x, r.h, r.w), &self.device);
        let window = self.window_of(self.tile);
        let importance = self
            .importance_of(model, self.tile)
            .map(|map| TileImportance {
                map,
                max: self.tile_max[self.tile],
            });
        self.run = Some(model.start_sampling_window(input, &self.opts, Some(window), importance));
    }

    /// Network evaluations so far: the steps less those YODA skipped (tiles of little detail,
    /// whose mask stays empty for the first steps).
    pub fn evaluations(&self) -> usize {
        self.evaluations_done + self.run.as_ref().map_or(0, SamplingRun::evaluations)
    }

    /// How many tiles the image is sampled in.
    pub fn tiles(&self) -> usize {
        self.tiles.len()
    }

    /// Network evaluations in the whole upscale.
    pub fn steps(&self) -> usize {
        self.steps_per_tile * self.tiles.len()
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn is_done(&self) -> bool {
        self.steps_done == self.steps()
    }

    /// One network evaluation. A tiled upscale then needs [`Upscaling::settle_async`] to blend
    /// a finished tile and start the next.
    pub fn step(&mut self, model: &DiffusionModel) {
        if self.run.is_none() && self.tile < self.tiles.len() {
            self.start_tile(model);
        }
        if let Some(run) = &mut self.run {
            assert!(
                !(run.is_done() && self.blender.is_some()),
                "a finished tile must be settled (settle_async) before the next step"
            );
            if !run.is_done() {
                model.step(run);
                self.steps_done += 1;
            }
        }
    }

    /// In a tiled upscale: blends the current tile once its run is done (reading it back), and
    /// with YODA reads the next tile's largest importance so its run can skip the steps its mask
    /// leaves empty (exact: without the read the tile runs every step to the same result).
    /// Call it before the first step and after each.
    pub async fn settle_async(&mut self, model: &DiffusionModel) -> Result<()> {
        self.blend_finished_async().await?;
        let next = self.tile;
        let unread = self.skip_idle && self.tile_max.get(next) == Some(&None);
        if self.run.is_none() && unread {
            if let Some(slice) = self.importance_of(model, next) {
                let max = read_f32_async(slice.max()).await?;
                self.tile_max[next] = max.first().copied();
            }
        }
        Ok(())
    }

    async fn blend_finished_async(&mut self) -> Result<()> {
        let finished = matches!(&self.run, Some(run) if run.is_done());
        let Some(blender) = self.blender.as_mut().filter(|_| finished) else {
            return Ok(());
        };
        let run = self.run.take().expect("a finished run");
        self.evaluations_done += run.evaluations();
        let r = self.tiles[self.tile].input;
        let output = read_tile_output(run, [r.h, r.w], self.scale).await?;
        blender.add(&self.tiles[self.tile], &output);
        self.tile += 1;
        Ok(())
    }

    /// Every tile's [`TileTask`], for sampling the tiles elsewhere ([`sample_tile_async`]) and
    /// blending them here ([`Upscaling::add_sampled`]). Only for a tiled upscale not yet stepped
    /// here (an image sampled whole has one run, with previews, and nothing to share).
    pub async fn tile_tasks_async(&self, model: &DiffusionModel) -> Result<Vec<TileTask>> {
        if self.blender.is_none() || self.tile > 0 || self.run.is_some() {
            return Err(WebSrError::Invalid(
                "only a tiled upscale that has not started shares its tiles".into(),
            ));
        }
        let mut tasks = Vec::with_capacity(self.tiles.len());
        for (i, tile) in self.tiles.iter().enumerate() {
            let r = tile.input;
            let importance = match self.importance_of(model, i) {
                Some(slice) => {
                    let [_, c, h, w] = slice.dims();
                    let values = read_f32_async(slice).await?;
                    Some(ImportanceSlice {
                        dims: [c, h, w],
                        values,
                    })
                }
                None => None,
            };
            tasks.push(TileTask {
                input: self.padded.crop(r.y, r.x, r.h, r.w),
                window: self.window_of(i),
                importance,
            });
        }
        Ok(tasks)
    }

    /// Blends tile `index`'s output sampled elsewhere from its [`TileTask`], with the network
    /// evaluations it took; tiles come in plan order, so the blend (and the bytes) are those of
    /// sampling them here.
    pub fn add_sampled(&mut self, index: usize, output: &Planar, evaluations: usize) -> Result<()> {
        if self.run.is_some() {
            return Err(WebSrError::Invalid(
                "this upscale samples its own tiles".into(),
            ));
        }
        let Some(blender) = self.blender.as_mut() else {
            return Err(WebSrError::Invalid(
                "an image sampled whole has no tiles to add".into(),
            ));
        };
        if index != self.tile {
            return Err(WebSrError::Invalid(format!(
                "tiles are added in order: expected tile {}, got {index}",
                self.tile
            )));
        }
        let r = self.tiles[index].input;
        let (h, w) = (r.h * self.scale, r.w * self.scale);
        if (output.channels, output.height, output.width) != (3, h, w) {
            return Err(WebSrError::Invalid(format!(
                "tile {index}'s output must be RGB {w}x{h}, got {}x{}x{}",
                output.channels, output.width, output.height
            )));
        }
        blender.add(&self.tiles[index], output);
        self.tile += 1;
        self.steps_done += self.steps_per_tile;
        self.evaluations_done += evaluations;
        Ok(())
    }

    /// Whether [`Upscaling::preview_async`] can show the whole image: only when it is one tile.
    pub fn can_preview(&self) -> bool {
        self.blender.is_none()
    }

    async fn read(&self, image: Tensor<4>) -> Result<Planar> {
        let image = image.narrow(2, 0, self.out_h).narrow(3, 0, self.out_w);
        Ok(Planar::new(
            3,
            self.out_h,
            self.out_w,
            read_f32_async(image).await?,
        ))
    }

    /// The image the current clean estimate decodes to (a preview between steps of an image
    /// sampled whole).
    pub async fn preview_async(&self) -> Result<Planar> {
        match (&self.run, self.can_preview()) {
            (Some(run), true) => self.read(run.preview()).await,
            _ => Err(WebSrError::Invalid(
                "a tiled diffusion upscale has no whole-image preview".into(),
            )),
        }
    }

    /// The result (of the steps taken so far, if not done; a tiled upscale must be done).
    pub async fn finish_async(mut self) -> Result<Planar> {
        match self.blender.take() {
            None => {
                let run = self.run.as_ref().expect("one run");
                self.read(run.preview_final()).await
            }
            Some(blender) => {
                if self.tile != self.tiles.len() {
                    return Err(WebSrError::Invalid(format!(
                        "only {} of {} tiles were sampled",
                        self.tile,
                        self.tiles.len()
                    )));
                }
                let full = blender.finish();
                Ok(full.crop(0, 0, self.out_h, self.out_w))
            }
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
