//! [`TiledDiffusion`]: the coordinator's half of a diffusion upscale shared by a pool of CPU
//! workers (www/websr.mjs). One worker plans the tiles (and YODA's importance map, once for the
//! whole image) and hands each out as a task; any worker holding the same model samples a task
//! ([`super::Engine::sample_tile`]) and the coordinator blends the outputs in plan order. A
//! tile's run depends only on its task (its noise is keyed by its place in the whole image), so
//! the image has the bytes of one worker sampling every tile (tests/diffusion_tiles.rs natively,
//! tests/browser/run.mjs in the page).

use super::image::Upscaled;
use super::{is_rgb_of, js_error, tile_output};
use crate::diffusion::sampler::Window;
use crate::diffusion::upscale::{ImportanceSlice, TileTask, Upscaling};
use crate::image::{Picture, Planar};
use crate::upscale::finish_picture;
use js_sys::{Array, Float32Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

/// One pooled diffusion upscale in progress.
#[wasm_bindgen]
pub struct TiledDiffusion {
    /// The job and the source picture (its alpha is upscaled at the end); `None` once finished.
    state: Option<(Upscaling, Picture)>,
    tasks: Vec<TileTask>,
    scale: usize,
}

impl TiledDiffusion {
    pub(super) fn new(
        job: Upscaling,
        picture: Picture,
        tasks: Vec<TileTask>,
        scale: usize,
    ) -> Self {
        TiledDiffusion {
            state: Some((job, picture)),
            tasks,
            scale,
        }
    }
}

fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

fn set(object: &Object, key: &str, value: JsValue) -> Result<(), JsValue> {
    Reflect::set(object, &key.into(), &value).map(|_| ())
}

fn pair(v: [usize; 2]) -> JsValue {
    Array::of2(&(v[0] as u32).into(), &(v[1] as u32).into()).into()
}

fn get(object: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    Reflect::get(object, &key.into())
}

fn get_usize(object: &JsValue, key: &str) -> Result<usize, JsValue> {
    get(object, key)?
        .as_f64()
        .filter(|v| *v >= 0.0 && v.fract() == 0.0)
        .map(|v| v as usize)
        .ok_or_else(|| error(&format!("a tile task needs a whole number `{key}`")))
}

fn get_pair(object: &JsValue, key: &str) -> Result<[usize; 2], JsValue> {
    let v = get(object, key)?;
    Ok([get_usize(&v, "0")?, get_usize(&v, "1")?])
}

fn get_values(object: &JsValue, key: &str) -> Result<Vec<f32>, JsValue> {
    get(object, key)?
        .dyn_into::<Float32Array>()
        .map(|a| a.to_vec())
        .map_err(|_| error(&format!("a tile task needs a Float32Array `{key}`")))
}

/// A task as the JS object `{height, width, data, whole: [h, w], origin: [y, x], importance?:
/// {channels, height, width, data}}` (the data planar `Float32Array`s).
pub(super) fn task_to_js(task: &TileTask) -> Result<JsValue, JsValue> {
    let out = Object::new();
    set(&out, "height", (task.input.height as u32).into())?;
    set(&out, "width", (task.input.width as u32).into())?;
    set(
        &out,
        "data",
        Float32Array::from(task.input.data.as_slice()).into(),
    )?;
    set(&out, "whole", pair(task.window.whole))?;
    set(&out, "origin", pair(task.window.origin))?;
    if let Some(slice) = &task.importance {
        let imp = Object::new();
        let [c, h, w] = slice.dims;
        set(&imp, "channels", (c as u32).into())?;
        set(&imp, "height", (h as u32).into())?;
        set(&imp, "width", (w as u32).into())?;
        set(
            &imp,
            "data",
            Float32Array::from(slice.values.as_slice()).into(),
        )?;
        set(&out, "importance", imp.into())?;
    }
    Ok(out.into())
}

/// The task a worker was sent, checked for shape (the sampler checks the sides).
pub(super) fn task_from_js(task: &JsValue) -> Result<TileTask, JsValue> {
    let (h, w) = (get_usize(task, "height")?, get_usize(task, "width")?);
    let data = get_values(task, "data")?;
    if !is_rgb_of(data.len(), h, w) {
        return Err(error(&format!(
            "a tile input of {h}x{w} RGB needs {} values, got {}",
            3 * h as u64 * w as u64,
            data.len()
        )));
    }
    let imp = get(task, "importance")?;
    let importance = match imp.is_undefined() || imp.is_null() {
        true => None,
        false => Some(ImportanceSlice {
            dims: [
                get_usize(&imp, "channels")?,
                get_usize(&imp, "height")?,
                get_usize(&imp, "width")?,
            ],
            values: get_values(&imp, "data")?,
        }),
    };
    Ok(TileTask {
        input: Planar::new(3, h, w, data),
        window: Window {
            whole: get_pair(task, "whole")?,
            origin: get_pair(task, "origin")?,
        },
        importance,
    })
}

#[wasm_bindgen]
impl TiledDiffusion {
    /// Number of tiles.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> u32 {
        self.tasks.len() as u32
    }

    /// Steps in the whole upscale (every tile's, YODA's skipped ones included): the progress total.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> u32 {
        self.state.as_ref().map_or(0, |(job, _)| job.steps() as u32)
    }

    /// Tile `index`'s task (see [`task_to_js`]), for any worker's `sampleTile`.
    pub fn task(&self, index: u32) -> Result<JsValue, JsValue> {
        let task = self
            .tasks
            .get(index as usize)
            .ok_or_else(|| error(&format!("no tile {index}")))?;
        task_to_js(task)
    }

    /// Blends tile `index`'s output (planar RGB, `height x width`) and the network evaluations
    /// it took; tiles must come in order.
    pub fn add(
        &mut self,
        index: u32,
        height: u32,
        width: u32,
        data: Vec<f32>,
        evaluations: u32,
    ) -> Result<(), JsValue> {
        let output = tile_output(height, width, data)?;
        let (job, _) = self
            .state
            .as_mut()
            .ok_or_else(|| error("this upscale is already finished"))?;
        job.add_sampled(index as usize, &output, evaluations as usize)
            .map_err(|e| js_error(&e))
    }

    /// Network evaluations of the tiles added so far (YODA skips the steps a tile's mask
    /// leaves empty).
    #[wasm_bindgen(getter)]
    pub fn evaluations(&self) -> u32 {
        self.state
            .as_ref()
            .map_or(0, |(job, _)| job.evaluations() as u32)
    }

    /// The upscaled image, once every tile is in; frees the job.
    pub fn finish(&mut self) -> Promise {
        let state = self.state.take();
        let scale = self.scale;
        self.tasks.clear();
        future_to_promise(async move {
            let (job, picture) = state.ok_or_else(|| error("this upscale is already finished"))?;
            let rgb = job.finish_async().await.map_err(|e| js_error(&e))?;
            Ok(Upscaled::encode(finish_picture(rgb, &picture, scale))?.into())
        })
    }
}
