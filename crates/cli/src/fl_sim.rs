//! `websr fl-sim`: the federated blind-SR benchmark (methods.md §5). Simulated clients, each
//! holding training images whose degradation kinds were dealt by a Dirichlet draw, train the
//! global model round by round; every strategy is compared with centralized training on the
//! same images for the same number of gradient steps, on all 8 degradation combinations of the
//! evaluation sets.
//!
//! The aggregation and server step are the aggregator's own code (`websr-federated`), and the
//! client step is the one the real clients run (`websr::federated::local`); only the network is
//! left out.

use crate::fl_sim_fedbuff::{client_step_times, fedbuff};
use anyhow::{bail, Context, Result};
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use websr::burn::tensor::Device;
use websr::degrade::{evaluation_suite, DegradationSampler};
use websr::device::Backend;
use websr::eval::evaluate_degraded;
use websr::federated::local::{LocalConfig, LocalTrainer};
use websr::federated::partition::{dirichlet_partition, kind_counts, Share};
use websr::federated::update::{rewrite, ModelDelta};
use websr::federated::ClientData;
use websr::train::data::TrainingSet;
use websr::upscale::run_model;
use websr::weights;
use websr_federated::strategy::{OptState, Strategy, StrategyConfig, StrategyKind, Update};

/// Arguments of `websr fl-sim`.
#[derive(Args)]
pub struct FlSimArgs {
    /// Initial global model: a shipped model name or a .safetensors file.
    #[arg(long, default_value = "wavelr-x4")]
    pub model: String,
    /// Number of simulated clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Clients training in each round (sampled at random).
    #[arg(long, default_value_t = 4)]
    pub per_round: usize,
    /// Dirichlet concentration of the degradation kinds across clients (0.1: nearly one kind
    /// per client; 100: IID).
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Local Adam steps per client and round.
    #[arg(long, default_value_t = 25)]
    pub local_steps: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// HR patch side.
    #[arg(long, default_value_t = 96)]
    pub patch: usize,
    /// Client (and centralized) Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// FedProx's mu.
    #[arg(long, default_value_t = 0.01)]
    pub prox_mu: f64,
    /// Strategies to compare (fedavg, fedprox, median, trimmed-mean, krum), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["fedavg".to_string(), "fedprox".into(), "median".into()])]
    pub strategies: Vec<String>,
    /// Skip the centralized baseline.
    #[arg(long)]
    pub no_centralized: bool,
    /// Training image folders; default: <data-root>/t91 and <data-root>/bsd200.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    #[arg(long, default_value = "../shared/data")]
    pub data_root: PathBuf,
    /// Evaluation folders (names under --data-root or paths), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["set5".to_string(), "set14".into()])]
    pub eval: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also run FedBuff (buffered asynchronous aggregation, K updates per version, deltas damped
    /// by 1/sqrt(1 + staleness)) for the simulated time the synchronous rounds took, with
    /// --per-round clients training at any moment.
    #[arg(long)]
    pub fedbuff: Option<usize>,
    /// Client speeds: each client's time per local step is drawn log-uniformly from 1 to this
    /// (seeded); a synchronous round lasts as long as its slowest picked client.
    #[arg(long, default_value_t = 4.0)]
    pub speed_spread: f64,
    /// Write the full results (per round losses, every score) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize)]
struct MethodResult {
    method: String,
    gradient_steps: usize,
    train_seconds: f64,
    /// Mean client loss per round (centralized: mean loss per block of equal size).
    round_losses: Vec<f64>,
    /// `scores[set][degradation]` = mean Y-PSNR, in `eval` and `degradations` order.
    psnr_y: Vec<Vec<f64>>,
    ssim_y: Vec<Vec<f64>>,
    /// The trained weights (not written to the JSON).
    #[serde(skip)]
    weights: Vec<u8>,
}

impl MethodResult {
    fn new(
        method: String,
        gradient_steps: usize,
        train_seconds: f64,
        round_losses: Vec<f64>,
        weights: Vec<u8>,
    ) -> Self {
        Self {
            method,
            gradient_steps,
            train_seconds,
            round_losses,
            psnr_y: Vec::new(),
            ssim_y: Vec::new(),
            weights,
        }
    }
}

#[derive(Serialize)]
struct SimReport {
    config: serde_json::Value,
    clients: Vec<[usize; 4]>,
    degradations: Vec<String>,
    eval: Vec<String>,
    methods: Vec<MethodResult>,
}

/// The strategies fl-sim runs. Not fedadam / fedyogi: fl-sim has no flags for their server
/// optimizer, which wants a far smaller server step than the 1 used here.
const SIM_STRATEGIES: [StrategyKind; 5] = [
    StrategyKind::Fedavg,
    StrategyKind::Fedprox,
    StrategyKind::Median,
    StrategyKind::TrimmedMean,
    StrategyKind::Krum,
];

/// The strategy `name` with fl-sim's settings: the aggregator's defaults (server step 1,
/// Krum f = 1) except `--prox-mu` and a trimmed-mean cut of 0.25 (one client at each end of
/// the default round of 4).
pub(crate) fn strategy_config(name: &str, args: &FlSimArgs) -> Result<StrategyConfig> {
    let Some(kind) = StrategyKind::from_name(name).filter(|k| SIM_STRATEGIES.contains(k)) else {
        let known: Vec<&str> = SIM_STRATEGIES.iter().map(|k| k.name()).collect();
        bail!("unknown strategy '{name}' ({})", known.join(", "));
    };
    let config = StrategyConfig {
        kind,
        prox_mu: args.prox_mu,
        trim_beta: 0.25,
        ..StrategyConfig::DEFAULT
    };
    config.validate()?;
    Ok(config)
}

fn client_data(all: &TrainingSet, share: &Share) -> Result<ClientData> {
    let indices: Vec<usize> = share.iter().map(|(i, _)| *i).collect();
    let samplers = share
        .iter()
        .map(|(_, k)| DegradationSampler::Base(*k))
        .collect();
    Ok(ClientData::with_samplers(all.subset(&indices), samplers)?)
}

/// Seed of one client's local run in one round of one method.
pub(crate) fn local_seed(seed: u64, round: usize, client: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((round as u64) << 20) ^ client as u64
}

pub fn run(args: FlSimArgs) -> Result<()> {
    if args.per_round == 0 || args.per_round > args.clients {
        bail!("--per-round must be between 1 and --clients");
    }
    if args.fedbuff == Some(0) || !(args.speed_spread >= 1.0 && args.speed_spread.is_finite()) {
        bail!("--fedbuff must be at least 1 and --speed-spread at least 1");
    }
    // Unknown names are refused before any training.
    let strategies = args
        .strategies
        .iter()
        .map(|name| Ok(strategy_config(name, &args)?.build()))
        .collect::<Result<Vec<_>>>()?;
    let device = Backend::Cpu.device()?;
    let init = crate::models::resolve_bytes(&args.model)?;
    let scale = weights::read_spec(&init)?.scale;
    if !args.patch.is_multiple_of(scale) {
        bail!(
            "--patch {} is not a multiple of the scale {scale}",
            args.patch
        );
    }
    let dirs = crate::train::training_dirs(&args.data, &args.data_root)
        .context("the benchmark needs ../shared/data (or --data and --eval folders)")?;
    let eval_dirs: Vec<PathBuf> = args
        .eval
        .iter()
        .map(|e| {
            let p = PathBuf::from(e);
            if p.is_dir() {
                p
            } else {
                args.data_root.join(e)
            }
        })
        .collect();
    for d in &eval_dirs {
        if !d.is_dir() {
            bail!("evaluation folder {} not found", d.display());
        }
    }
    let all = TrainingSet::load_dirs(&dirs).context("loading the training images")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let shares = dirichlet_partition(all.len(), args.clients, args.alpha, 2, &mut rng)?;
    println!(
        "{} training images over {} clients, Dirichlet alpha {} (images per kind clean/blur/noise/jpeg):",
        all.len(),
        args.clients,
        args.alpha
    );
    let clients: Vec<ClientData> = shares
        .iter()
        .map(|s| client_data(&all, s))
        .collect::<Result<_>>()?;
    for (i, s) in shares.iter().enumerate() {
        println!("  client {i}: {:?}", kind_counts(s));
    }
    let total_steps = args.rounds * args.per_round * args.local_steps;
    let suite = evaluation_suite();

    let mut methods = vec![MethodResult::new(
        format!("initial ({})", args.model),
        0,
        0.0,
        Vec::new(),
        init.clone(),
    )];
    if !args.no_centralized {
        let t = std::time::Instant::now();
        let (bytes, losses) = centralized(&args, &all, &shares, &init, total_steps, &device)?;
        let seconds = t.elapsed().as_secs_f64();
        methods.push(MethodResult::new(
            "centralized".into(),
            total_steps,
            seconds,
            losses,
            bytes,
        ));
    }
    let step_times = client_step_times(args.clients, args.speed_spread, args.seed);
    let mut sync_time = 0.0;
    for (name, strategy) in args.strategies.iter().zip(&strategies) {
        let t = std::time::Instant::now();
        let (bytes, losses, round_times) = federated(
            &args,
            strategy.as_ref(),
            &clients,
            &init,
            &step_times,
            &device,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        sync_time = round_times.iter().sum();
        methods.push(MethodResult::new(
            name.clone(),
            total_steps,
            seconds,
            losses,
            bytes,
        ));
    }
    if let Some(k) = args.fedbuff {
        println!(
            "synchronous rounds took {sync_time:.0} simulated time units (client step times \
             1-{} units); FedBuff with K = {k} gets the same time",
            args.speed_spread
        );
        let t = std::time::Instant::now();
        let run = fedbuff(&args, k, &clients, &init, &step_times, sync_time, &device)?;
        println!(
            "fedbuff-{k}: {} updates ({} local steps), {} versions, mean staleness {:.2}; \
             updates per client {:?} (step times {:.2?})",
            run.updates,
            run.updates * args.local_steps,
            run.versions,
            run.mean_staleness,
            run.per_client,
            step_times
        );
        methods.push(MethodResult::new(
            format!("fedbuff-{k}"),
            run.updates * args.local_steps,
            t.elapsed().as_secs_f64(),
            run.losses,
            run.weights,
        ));
    }

    let pb = crate::bar(
        (methods.len() * eval_dirs.len() * suite.len()) as u64,
        "evaluating {bar:30} {pos}/{len} {msg} ETA {eta}",
    );
    for m in methods.iter_mut() {
        let model = weights::from_bytes(&m.weights, &device)?;
        for dir in &eval_dirs {
            let (mut psnr, mut ssim) = (Vec::new(), Vec::new());
            for d in &suite {
                pb.set_message(format!("{} {}", m.method, d.short_name()));
                let report = evaluate_degraded(dir, scale, d, args.seed, &mut |lr| {
                    Ok(run_model(&model, lr, &device))
                })?;
                psnr.push(report.mean.psnr_y);
                ssim.push(report.mean.ssim_y);
                pb.inc(1);
            }
            m.psnr_y.push(psnr);
            m.ssim_y.push(ssim);
        }
    }
    pb.finish_and_clear();

    let names: Vec<String> = suite.iter().map(|d| d.short_name()).collect();
    for (s, dir) in eval_dirs.iter().enumerate() {
        print_table(dir, scale, s, &names, &methods);
    }
    if let Some(path) = &args.json {
        let report = SimReport {
            config: config_json(&args, total_steps),
            clients: shares.iter().map(kind_counts).collect(),
            degradations: names,
            eval: eval_dirs.iter().map(|d| d.display().to_string()).collect(),
            methods,
        };
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

fn config_json(args: &FlSimArgs, total_steps: usize) -> serde_json::Value {
    serde_json::json!({
        "model": args.model, "clients": args.clients, "per_round": args.per_round,
        "alpha": args.alpha, "rounds": args.rounds, "local_steps": args.local_steps,
        "batch": args.batch, "patch": args.patch, "lr": args.lr, "prox_mu": args.prox_mu,
        "seed": args.seed, "gradient_steps_per_method": total_steps,
    })
}

/// Y-PSNR per degradation and method as a markdown table.
fn print_table(dir: &Path, scale: usize, set: usize, names: &[String], methods: &[MethodResult]) {
    let set_name = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    println!("\n{set_name} x{scale} Y-PSNR (dB) by test degradation:\n");
    print!("| method |");
    for n in names {
        print!(" {n} |");
    }
    println!(" mean |");
    println!("|---|{}---|", "---|".repeat(names.len()));
    for m in methods {
        let row = &m.psnr_y[set];
        print!("| {} |", m.method);
        for v in row {
            print!(" {v:.2} |");
        }
        println!(" {:.2} |", row.iter().sum::<f64>() / row.len() as f64);
    }
}

/// The federated run: each round, `per_round` random clients train from the global model and
/// the strategy merges their deltas. Returns the final weights and the mean client loss per
/// round.
/// One client's local run from `global` with the real client step: its delta, weighted by its
/// examples, and its mean loss.
pub(crate) fn local_update(
    args: &FlSimArgs,
    prox_mu: f64,
    global: &[u8],
    client: &ClientData,
    seed: u64,
    device: &Device,
    pb: &indicatif::ProgressBar,
) -> Result<(Update, f64)> {
    let cfg = LocalConfig {
        steps: args.local_steps,
        batch: args.batch,
        patch: args.patch,
        lr: args.lr,
        prox_mu,
        seed,
    };
    let mut trainer = LocalTrainer::new(global, cfg, device)?;
    for _ in 0..args.local_steps {
        let loss = trainer.step(client)?;
        pb.set_prefix(format!("{loss:.4}"));
        pb.inc(1);
    }
    let delta = ModelDelta::between(global, &trainer.trained_bytes()?)?;
    let update = Update {
        tensors: delta.tensors,
        num_examples: client.num_examples(args.patch),
    };
    Ok((update, trainer.mean_loss().unwrap_or(f64::NAN)))
}

/// Synchronous rounds; also returns each round's simulated duration, the slowest picked
/// client's (`step_times[c]` per local step): a round waits for its stragglers.
fn federated(
    args: &FlSimArgs,
    strategy: &dyn Strategy,
    clients: &[ClientData],
    init: &[u8],
    step_times: &[f64],
    device: &Device,
) -> Result<(Vec<u8>, Vec<f64>, Vec<f64>)> {
    let prox_mu = strategy.client_config().prox_mu;
    let mut round_times = Vec::with_capacity(args.rounds);
    let mut global = init.to_vec();
    let mut opt = OptState::default();
    let mut losses = Vec::with_capacity(args.rounds);
    // The same client draws for every strategy: a paired comparison.
    let mut pick_rng = StdRng::seed_from_u64(args.seed ^ 0x00C1_1EA7);
    let pb = crate::bar(
        (args.rounds * args.per_round * args.local_steps) as u64,
        "{msg} {bar:30} {pos}/{len} steps, loss {prefix} ETA {eta}",
    );
    pb.set_message(strategy.name());
    for round in 0..args.rounds {
        let picked = sample(&mut pick_rng, clients.len(), args.per_round).into_vec();
        let mut updates = Vec::with_capacity(picked.len());
        let mut round_loss = 0.0;
        for &c in &picked {
            let seed = local_seed(args.seed, round, c);
            let (update, loss) =
                local_update(args, prox_mu, &global, &clients[c], seed, device, &pb)?;
            round_loss += loss;
            updates.push(update);
        }
        round_times.push(
            picked
                .iter()
                .map(|&c| args.local_steps as f64 * step_times[c])
                .fold(0.0, f64::max),
        );
        let merged = strategy
            .aggregate(&updates)
            .map_err(|e| anyhow::anyhow!("round {round}: {e}"))?;
        global = rewrite(&global, |_, values| {
            strategy.apply(values, &merged, &mut opt)
        })?;
        losses.push(round_loss / picked.len() as f64);
        // A line per round, also when the bar is hidden (output to a file).
        pb.suspend(|| {
            println!(
                "{} round {}/{}: clients {picked:?}, mean client loss {:.4}",
                strategy.name(),
                round + 1,
                args.rounds,
                round_loss / picked.len() as f64
            )
        });
    }
    pb.finish_and_clear();
    Ok((global, losses, round_times))
}

/// Centralized training on the union of the clients' images (each with its assigned kind), for
/// the same number of gradient steps as a federated run; Adam runs uninterrupted.
fn centralized(
    args: &FlSimArgs,
    all: &TrainingSet,
    shares: &[Share],
    init: &[u8],
    steps: usize,
    device: &Device,
) -> Result<(Vec<u8>, Vec<f64>)> {
    let union: Share = shares.iter().flatten().copied().collect();
    let data = client_data(all, &union)?;
    let cfg = LocalConfig {
        steps,
        batch: args.batch,
        patch: args.patch,
        lr: args.lr,
        prox_mu: 0.0,
        seed: local_seed(args.seed, usize::MAX >> 20, 0),
    };
    let mut trainer = LocalTrainer::new(init, cfg, device)?;
    let pb = crate::bar(
        steps as u64,
        "centralized {bar:30} {pos}/{len} steps, loss {prefix} ETA {eta}",
    );
    let block = (args.per_round * args.local_steps).max(1);
    let mut losses = Vec::new();
    let mut sum = 0.0;
    for step in 1..=steps {
        let loss = trainer.step(&data)?;
        sum += loss;
        if step % block == 0 {
            losses.push(sum / block as f64);
            pb.suspend(|| {
                println!(
                    "centralized step {step}/{steps}: mean loss {:.4}",
                    sum / block as f64
                )
            });
            sum = 0.0;
        }
        pb.set_prefix(format!("{loss:.4}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((trainer.trained_bytes()?, losses))
}
