//! [`TiledUpscale`]: the coordinator's half of an upscale shared by a pool of workers
//! (www/websr.mjs). One worker plans the tiles and blends the outputs in plan order; any worker
//! holding the same model computes a tile ([`super::Engine::run_tile`]), so the result has the
//! same bytes whatever the pool size (tests/browser/run.mjs checks it).

use super::image::Upscaled;
use super::{js_error, tile_output};
use crate::image::Picture;
use crate::models::SrModel;
use crate::upscale::{finish_picture, TileJob, UpscaleOptions};
use js_sys::{Float32Array, Object, Reflect};
use wasm_bindgen::prelude::*;

/// One pooled upscale in progress.
#[wasm_bindgen]
pub struct TiledUpscale {
    /// The job and the source picture (its alpha is upscaled at the end); `None` once finished.
    state: Option<(TileJob, Picture)>,
    scale: usize,
}

impl TiledUpscale {
    pub(super) fn new(model: &SrModel, picture: Picture, opts: &UpscaleOptions) -> TiledUpscale {
        TiledUpscale {
            state: Some((TileJob::new(model, picture.rgb.clone(), opts), picture)),
            scale: model.scale(),
        }
    }

    fn job(&mut self) -> Result<&mut TileJob, JsValue> {
        match &mut self.state {
            Some((job, _)) => Ok(job),
            None => Err(finished()),
        }
    }
}

fn finished() -> JsValue {
    js_sys::Error::new("this upscale is already finished").into()
}

#[wasm_bindgen]
impl TiledUpscale {
    /// Number of tiles.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> u32 {
        self.state.as_ref().map_or(0, |(job, _)| job.len() as u32)
    }

    /// Tile `index`'s model input: `{height, width, data}` with `data` a planar RGB
    /// `Float32Array`.
    pub fn input(&mut self, index: u32) -> Result<JsValue, JsValue> {
        let job = self.job()?;
        if index as usize >= job.len() {
            return Err(js_sys::Error::new(&format!("no tile {index}")).into());
        }
        let tile = job.input(index as usize);
        let out = Object::new();
        Reflect::set(&out, &"height".into(), &(tile.height as u32).into())?;
        Reflect::set(&out, &"width".into(), &(tile.width as u32).into())?;
        let data = Float32Array::from(tile.data.as_slice());
        Reflect::set(&out, &"data".into(), &data.into())?;
        Ok(out.into())
    }

    /// Blends tile `index`'s output (planar RGB, `height x width`); tiles must come in order.
    pub fn add(
        &mut self,
        index: u32,
        height: u32,
        width: u32,
        data: Vec<f32>,
    ) -> Result<(), JsValue> {
        let output = tile_output(height, width, data)?;
        self.job()?
            .add(index as usize, &output)
            .map_err(|e| js_error(&e))
    }

    /// The upscaled image, once every tile is in; frees the job.
    pub fn finish(&mut self) -> Result<Upscaled, JsValue> {
        let (job, picture) = self.state.take().ok_or_else(finished)?;
        let rgb = job.finish().map_err(|e| js_error(&e))?;
        Upscaled::encode(finish_picture(rgb, &picture, self.scale))
    }
}
