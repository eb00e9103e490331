//! Diffusion upscaling of a whole image: pad the LR input so the diffused signal fits the
//! U-Net (edge replication), sample step by step, crop back. [`Upscaling`] is the stepwise form
//! that [`crate::upscale`] drives for every caller (previews, progress, cancel).

use super::model::{DiffusionModel, SampleOptions};
use super::sampler::SamplingRun;
use crate::device::{read_f32_async, to_tensor};
use crate::error::{Result, WebSrError};
use crate::image::Planar;
use burn::tensor::{Device, Tensor};

/// The largest LR input sampled whole: diffusion runs the U-Net on the full image at every
/// step, and its activations grow with the pixels (about 256 MB on the CPU at this size).
pub const MAX_LR_PIXELS: usize = 256 * 256;

/// A diffusion upscale in progress.
pub struct Upscaling {
    run: SamplingRun,
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

/// `lr` checked and edge-padded so the diffused signal fits the U-Net, as a tensor.
fn padded_input(model: &DiffusionModel, lr: &Planar, device: &Device) -> Result<Tensor<4>> {
    if lr.height == 0 || lr.width == 0 {
        return Err(WebSrError::Empty);
    }
    if lr.height * lr.width > MAX_LR_PIXELS {
        return Err(WebSrError::Invalid(format!(
            "diffusion upscaling samples the whole image at once and takes inputs up to {} \
             pixels; this one is {}x{}",
            MAX_LR_PIXELS, lr.width, lr.height
        )));
    }
    // HR sides must be multiples of `m`, so LR sides of `m / gcd(m, scale)`.
    let (m, s) = (model.spec.hr_multiple(), model.scale());
    let lr_multiple = m / gcd(m, s);
    let round = |v: usize| v.div_ceil(lr_multiple) * lr_multiple;
    Ok(to_tensor(
        &pad_edge(lr, round(lr.height), round(lr.width)),
        device,
    ))
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

impl Upscaling {
    /// Starts upscaling the RGB image `lr` (values in `[0, 1]`).
    pub fn start(
        model: &DiffusionModel,
        lr: &Planar,
        opts: &SampleOptions,
        device: &Device,
    ) -> Result<Upscaling> {
        let padded = padded_input(model, lr, device)?;
        Ok(Upscaling {
            run: model.start_sampling(padded, opts),
            out_h: lr.height * model.scale(),
            out_w: lr.width * model.scale(),
        })
    }

    pub fn steps(&self) -> usize {
        self.run.steps()
    }

    pub fn steps_done(&self) -> usize {
        self.run.steps_done()
    }

    pub fn is_done(&self) -> bool {
        self.run.is_done()
    }

    /// One network evaluation.
    pub fn step(&mut self, model: &DiffusionModel) {
        model.step(&mut self.run);
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

    /// The image the current clean estimate decodes to (a preview between steps).
    pub async fn preview_async(&self) -> Result<Planar> {
        self.read(self.run.preview()).await
    }

    /// The result (of the steps taken so far, if not done).
    pub async fn finish_async(self) -> Result<Planar> {
        let image = self.run.preview_final();
        self.read(image).await
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
