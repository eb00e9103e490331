//! `websr bench`: the speed table (DWT/IDWT, each model's forward pass, training steps),
//! measured side by side in one run on one device.

use anyhow::Result;
use websr::device::Backend;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Input side in pixels.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Timed repetitions per row (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Skip the training-step rows.
    #[arg(long)]
    no_train: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let backend = Backend::parse(&args.backend)?;
    let device = backend.device()?;
    let mut rows = websr::bench::inference_rows(&device, args.size, args.reps);
    if !args.no_train {
        rows.extend(websr::bench::training_rows(&device, args.reps));
    }
    println!("{}", websr::bench::to_markdown(backend.name(), &rows));
    Ok(())
}
