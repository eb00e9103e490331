//! `websr prune`: score every sub-image of the training set with a scorer model, rank, and write
//! the kept subset as a manifest for `websr train --subset`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use websr::device::Backend;
use websr::eval::image_files;
use websr::image::Rect;
use websr::prune::{score_grid, Order, ScorerInfo, SelectParams, SubsetManifest};
use websr::weights::sha256_hex;
use websr::zoo::{default_dir, Manifest as Zoo};

/// Arguments of `websr prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Scorer: a shipped model name (e.g. wavelr-x4) or a .safetensors file.
    #[arg(long)]
    pub scorer: String,
    /// Training image folders (repeatable); default: <data-root>/t91 and <data-root>/bsd200.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    #[arg(long, default_value = "../shared/data")]
    pub data_root: PathBuf,
    /// Fraction of all samples to keep.
    #[arg(long, default_value_t = 0.5)]
    pub keep: f64,
    /// Keep exactly this many samples instead of a fraction (e.g. the K of a distilled set).
    #[arg(long, conflicts_with = "keep")]
    pub count: Option<usize>,
    /// Fraction of all samples removed from the hardest end first ("refined"; e.g. 0.05).
    #[arg(long, default_value_t = 0.0)]
    pub drop_hardest: f64,
    /// des (keep the hardest), asc (the easiest) or random (a seeded random subset).
    #[arg(long, default_value = "des")]
    pub order: String,
    /// Seed of --order random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sub-image side in HR pixels (a sample is one sub-image of this grid).
    #[arg(long, default_value_t = websr::prune::DEFAULT_SUB_IMAGE)]
    pub sub_image: usize,
    /// Grid stride in HR pixels.
    #[arg(long, default_value_t = websr::prune::DEFAULT_SUB_IMAGE)]
    pub stride: usize,
    /// The manifest to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// The scorer's SHA-256: the zoo manifest's for a shipped name, else the file's.
fn scorer_sha256(name: &str) -> Result<String> {
    if name.ends_with(".safetensors") || Path::new(name).is_file() {
        let bytes = std::fs::read(name).with_context(|| format!("reading {name}"))?;
        return Ok(sha256_hex(&bytes));
    }
    let zoo = Zoo::load(&default_dir())?;
    Ok(zoo
        .find(name)
        .with_context(|| format!("no shipped model '{name}'"))?
        .sha256
        .clone())
}

pub fn run(args: PruneArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let model = crate::models::resolve_one_pass(&args.scorer, &device)?;
    let mut selection = SelectParams {
        order: websr::prune::Order::parse(&args.order)?,
        keep: args.keep,
        drop_hardest: args.drop_hardest,
        seed: args.seed,
    };
    let dirs = crate::train::training_dirs(&args.data, &args.data_root)?;
    let mut files = Vec::new();
    for d in &dirs {
        files.extend(image_files(d)?);
    }
    if files.is_empty() {
        bail!("no training images in {dirs:?}");
    }
    let pb = crate::bar(
        files.len() as u64,
        "scoring [{bar:30}] {pos}/{len} images, ETA {eta}",
    );
    let mut all: Vec<(String, Rect, f64)> = Vec::new();
    for f in &files {
        let abs = std::fs::canonicalize(f).with_context(|| format!("{}", f.display()))?;
        let pic = websr::image::load(f)?;
        let scored = score_grid(
            &model,
            std::slice::from_ref(&pic.rgb),
            args.sub_image,
            args.stride,
            &device,
        )?;
        let name = abs.display().to_string();
        all.extend(scored.into_iter().map(|p| (name.clone(), p.rect, p.score)));
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(count) = args.count {
        if count == 0 || count > all.len() {
            bail!("--count {count}: the grid has {} sub-images", all.len());
        }
        selection.keep = count as f64 / all.len() as f64;
    }
    let scorer = ScorerInfo {
        name: args.scorer.clone(),
        sha256: scorer_sha256(&args.scorer)?,
        scale: model.scale(),
    };
    let manifest = SubsetManifest::build(scorer, args.sub_image, args.stride, &all, selection)?;
    manifest.write(&args.output)?;
    let what = match selection.order {
        Order::Des => "hardest",
        Order::Asc => "easiest",
        Order::Random => "random",
    };
    println!(
        "{} images, {} sub-images of {}x{} scored by {} (mean MSE {:.3e}); kept {} ({} after \
         dropping the hardest {:.1}%; mean MSE {:.3e}) -> {}",
        files.len(),
        manifest.scored,
        args.sub_image,
        args.sub_image,
        args.scorer,
        manifest.mean_score,
        manifest.samples.len(),
        what,
        100.0 * args.drop_hardest,
        manifest.mean_kept_score,
        args.output.display()
    );
    Ok(())
}
