//! `websr figure`: the README's side-by-side picture: LR (nearest-neighbour, so its pixels show)
//! | bicubic | each model | HR, all cropped to the same region of a benchmark image.

use crate::models::resolve_model;
use crate::sampling::SamplingArgs;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use websr::device::Backend;
use websr::image::{Picture, Planar};
use websr::resize::{degrade_bicubic, imresize};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::Model;

#[derive(clap::Args)]
pub struct FigureArgs {
    /// HR image (LR is made from it with the evaluation degradation).
    #[arg(long)]
    image: PathBuf,
    /// Models to show, in order (repeatable).
    #[arg(long, required = true)]
    model: Vec<String>,
    #[arg(long, default_value_t = 4)]
    scale: usize,
    /// Crop as Y,X,SIZE in HR pixels.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 0, 128])]
    crop: Vec<usize>,
    #[arg(short, long)]
    output: PathBuf,
    /// Diffusion models: sampled with these steps and seed (default 10 steps, seed 0);
    /// a model trained with YODA is sampled with YODA.
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: FigureArgs) -> Result<()> {
    let [y, x, size] = args.crop[..] else {
        bail!("--crop takes Y,X,SIZE");
    };
    let device = Backend::Cpu.device()?;
    let mut panels = Vec::new();
    for name in &args.model {
        let model = resolve_model(name, Some(args.scale), &device)?;
        // The sampling flags apply to the diffusion panels; one-pass panels run as `upscale`.
        let mut opts = UpscaleOptions::default();
        if let Model::Diffusion(d) = &model {
            let mut defaults = d.default_options();
            if d.spec.default_sampling.is_none() {
                defaults.steps = Some(10);
            }
            opts.sampling = args.sampling.options(&defaults)?;
        }
        panels.push((model, opts));
    }
    let upscalers: Vec<Upscaler> = panels
        .iter()
        .map(|(model, opts): &(Model, UpscaleOptions)| -> Upscaler {
            let device = &device;
            Box::new(move |lr| Ok(upscale_rgb(model, lr, opts, device, &mut |_, _| true)?))
        })
        .collect();
    draw(
        &args.image,
        &upscalers,
        args.scale,
        [y, x, size],
        &args.output,
    )
}

fn nearest(p: &Planar, s: usize) -> Planar {
    let mut out = Planar::zeros(p.channels, p.height * s, p.width * s);
    for c in 0..p.channels {
        for y in 0..p.height * s {
            for x in 0..p.width * s {
                out.plane_mut(c)[y * p.width * s + x] = p.plane(c)[(y / s) * p.width + x / s];
            }
        }
    }
    out
}

/// Places panels left to right with a white gap.
fn strip(panels: &[Planar], gap: usize) -> Planar {
    let h = panels[0].height;
    let w: usize = panels.iter().map(|p| p.width).sum::<usize>() + gap * (panels.len() - 1);
    let mut out = Planar::new(3, h, w, vec![1.0; 3 * h * w]);
    let mut x0 = 0;
    for p in panels {
        for c in 0..3 {
            for y in 0..h {
                let src = &p.plane(c)[y * p.width..(y + 1) * p.width];
                out.plane_mut(c)[y * w + x0..y * w + x0 + p.width].copy_from_slice(src);
            }
        }
        x0 += p.width + gap;
    }
    out
}

/// A model as the figure uses it: the LR image in, the SR image out.
type Upscaler<'a> = Box<dyn Fn(&Planar) -> Result<Planar> + 'a>;

/// `models` must all upscale by `scale`.
fn draw(
    image: &Path,
    models: &[Upscaler],
    scale: usize,
    crop: [usize; 3],
    out: &Path,
) -> Result<()> {
    let [cy, cx, size] = crop;
    let pic = websr::image::load(image)?;
    let (hr, lr) = degrade_bicubic(&pic.rgb, scale);
    if cy + size > hr.height || cx + size > hr.width || size % scale != 0 {
        bail!(
            "crop {size}px at ({cy}, {cx}) does not fit a {}x{} image (size must divide by {scale})",
            hr.width,
            hr.height
        );
    }
    let cut = |p: &Planar| {
        let mut c = p.crop(cy, cx, size, size);
        c.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        c
    };
    let mut panels = vec![
        nearest(
            &lr.crop(cy / scale, cx / scale, size / scale, size / scale),
            scale,
        ),
        cut(&imresize(&lr, scale as f64)),
    ];
    for upscale in models {
        panels.push(cut(&upscale(&lr)?));
    }
    panels.push(cut(&hr));
    let fig = Picture {
        rgb: strip(&panels, 4),
        alpha: None,
    };
    websr::image::save(&fig, out)?;
    Ok(())
}
