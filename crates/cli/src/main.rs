//! `websr`: upscale images, train and evaluate the SR models from the command line.
//!
//! One module per command, each with its clap arguments and its `run`; `main` only dispatches.
//! `--model` arguments are resolved in [`models`] (each weights file read once, either kind of
//! model), sampling flags in [`sampling`].

mod bench;
mod bench_diffusion;
mod bench_tiles;
mod eval;
mod figure;
mod fl_client;
mod fl_secagg;
mod fl_sim;
mod fl_sim_fedbuff;
mod models;
mod peak_alloc;
mod progress;
mod prune;
mod reencode;
mod sampling;
mod ship;
mod train;
mod tune_diffusion;
mod upscale;

use anyhow::Result;
use clap::{Parser, Subcommand};
pub(crate) use progress::bar;

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

#[derive(Parser)]
#[command(
    name = "websr",
    version,
    about = "Wavelet super-resolution: upscale, train, evaluate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upscale an image, or every image of a folder.
    Upscale(upscale::UpscaleArgs),
    /// Score the training set's sub-images with a scorer model's loss and write the hardest
    /// fraction as a subset manifest (for `train --subset`).
    Prune(prune::PruneArgs),
    /// Take part in federated training: train on your own images, send only the model update
    /// to a websr-aggregator.
    FlClient(fl_client::FlClientArgs),
    /// The federated blind-SR benchmark: simulated clients with Dirichlet non-IID degradations,
    /// strategies against centralized training, scored on 8 degradation combinations.
    FlSim(fl_sim::FlSimArgs),
    /// Train a model on image folders (default: the 291 set under ../shared/data).
    Train(train::TrainArgs),
    /// Evaluate a model on a benchmark folder: Y-PSNR / Y-SSIM per image and mean.
    Eval(eval::EvalArgs),
    /// The diffusion benchmark: SR3 vs DiWa vs DiWa+YODA at equal DDIM steps on Set5/Set14
    /// (PSNR/SSIM), images per second and peak memory, and the step-count trade-off.
    BenchDiffusion(bench_diffusion::BenchArgs),
    /// Tiled diffusion: YODA's skipped steps (time saved, same image) and peak memory whole
    /// against in tiles.
    BenchTiles(bench_tiles::BenchTilesArgs),
    /// A DiWa model's steps / strength trade-off on held-out training images (PSNR, SSIM,
    /// Haar detail energy) and the default it implies.
    TuneDiffusion(tune_diffusion::TuneArgs),
    /// List the shipped models.
    Models,
    /// Side-by-side crop: LR | bicubic | each --model | HR, from a benchmark image.
    Figure(figure::FigureArgs),
    /// Ship a finished training run: copy its weights to the models folder, measure Set5/Set14,
    /// update models/manifest.json and write the model card.
    Ship(ship::ShipArgs),
    /// Rewrite shipped models in another wire format (default float16) without retraining:
    /// re-measures Set5/Set14 of the new file and updates the manifest and the model cards.
    Reencode(reencode::ReencodeArgs),
    /// Print the speed table: DWT/IDWT, each model's forward pass, training steps.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Upscale(args) => upscale::run(args),
        Command::Prune(args) => prune::run(args),
        Command::FlClient(args) => fl_client::run(args),
        Command::FlSim(args) => fl_sim::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::BenchDiffusion(args) => bench_diffusion::run(args),
        Command::TuneDiffusion(args) => tune_diffusion::run(args),
        Command::BenchTiles(args) => bench_tiles::run(args),
        Command::Models => models::list(),
        Command::Figure(args) => figure::run(args),
        Command::Ship(args) => ship::run(&args),
        Command::Reencode(args) => reencode::run(&args),
        Command::Bench(args) => bench::run(args),
    }
}
