//! The federated client: deltas and update bodies the server accepts, local training with and
//! without FedProx, one protocol round, and the Dirichlet partition of the simulator.

mod common;

use common::shapes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use websr::burn::tensor::Device;
use websr::degrade::{DegradationSampler, Kind};
use websr::federated::local::{LocalConfig, LocalTrainer};
use websr::federated::partition::{dirichlet_partition, kind_counts};
use websr::federated::round::{plan, run_round_async, ClientOptions};
use websr::federated::update::{rewrite, ModelDelta};
use websr::federated::ClientData;
use websr::models::{Arch, ModelSpec, SrModel};
use websr::train::data::TrainingSet;
use websr::weights::{self, sha256_hex};
use websr_federated::protocol::{ClientFloor, RoundConfig};
use websr_federated::tensors::{parse_update, read_model};

/// flex sums in parallel; trainings in one process take turns so each is reproducible.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn global_bytes() -> Vec<u8> {
    let spec = ModelSpec {
        arch: Arch::WaveLr,
        scale: 2,
        features: 8,
        body_layers: 1,
    };
    let model = SrModel::init_seeded(spec, &Device::flex(), 3).unwrap();
    weights::to_bytes(&model).unwrap()
}

fn client(sampler: DegradationSampler) -> ClientData {
    let images = [shapes(48, 48, 1), shapes(40, 56, 2)];
    ClientData::new(TrainingSet::from_images(&images), sampler)
}

fn local(steps: usize, prox_mu: f64) -> LocalConfig {
    LocalConfig {
        steps,
        batch: 2,
        patch: 16,
        lr: 5e-3,
        prox_mu,
        seed: 11,
    }
}

fn train(global: &[u8], cfg: LocalConfig, data: &ClientData) -> Vec<u8> {
    let steps = cfg.steps;
    let mut t = LocalTrainer::new(global, cfg, &Device::flex()).unwrap();
    for _ in 0..steps {
        assert!(t.step(data).unwrap().is_finite());
    }
    assert_eq!(t.steps_done(), steps);
    let bytes = t.trained_bytes().unwrap();
    // The asynchronous read-back (what the browser uses) gives exactly the trained weights.
    let direct = read_model(&weights::to_bytes(&t.inference_model()).unwrap()).unwrap();
    let read_back = read_model(&bytes).unwrap();
    assert_eq!(read_back.layout, direct.layout);
    assert_eq!(read_back.values, direct.values);
    assert_eq!(read_back.metadata, direct.metadata);
    bytes
}

fn round_config(global: &[u8]) -> RoundConfig {
    RoundConfig {
        round: 3,
        global_version: 2,
        model_sha256: sha256_hex(global),
        selected: true,
        submitted: false,
        finished: false,
        retry_after_s: 1.0,
        deadline_unix_ms: 0,
        min_clients: 1,
        target_clients: 1,
        accepted: 0,
        strategy: "fedavg".into(),
        prox_mu: 0.0,
        clip_norm: None,
        local_epochs: 1,
        client_lr: 1e-3,
        batch_size: 8,
        max_examples: 1000,
        secure_aggregation: None,
    }
}

#[test]
fn a_delta_added_to_the_global_model_gives_the_trained_model() {
    let _turn = serial();
    let global = global_bytes();
    let trained = train(&global, local(3, 0.0), &client(DegradationSampler::Mixed));
    let zero = ModelDelta::between(&global, &global).unwrap();
    assert_eq!(zero.norm(), 0.0);
    let delta = ModelDelta::between(&global, &trained).unwrap();
    assert!(delta.norm() > 0.0);
    let rebuilt = rewrite(&global, |_, values| {
        for (v, d) in values.iter_mut().zip(&delta.tensors) {
            v.iter_mut().zip(d).for_each(|(x, y)| *x += y);
        }
    })
    .unwrap();
    let (a, b) = (read_model(&rebuilt).unwrap(), read_model(&trained).unwrap());
    for (x, y) in a.values.iter().flatten().zip(b.values.iter().flatten()) {
        assert!((x - y).abs() < 1e-6);
    }
    // The rebuilt file keeps the global file's metadata, so it loads as a model.
    weights::from_bytes(&rebuilt, &Device::flex()).unwrap();

    let other = {
        let spec = ModelSpec::default_for(Arch::WaveLr, 2);
        weights::to_bytes(&SrModel::init(spec, &Device::flex()).unwrap()).unwrap()
    };
    let err = ModelDelta::between(&global, &other)
        .unwrap_err()
        .to_string();
    for needle in [
        "the trained model is a wavelr x2 model (48 features, 6 body layers)",
        "the global model is a wavelr x2 model (8 features, 1 body layers)",
        "does not: 'body.1.bias'",
    ] {
        assert!(err.contains(needle), "'{err}' lacks '{needle}'");
    }
    assert!(ModelDelta::between(&global, b"not a model").is_err());
}

#[test]
fn the_proximal_term_keeps_the_local_model_near_the_global_one() {
    let _turn = serial();
    let global = global_bytes();
    let data = client(DegradationSampler::Base(Kind::Blur));
    let free = ModelDelta::between(&global, &train(&global, local(12, 0.0), &data)).unwrap();
    let held = ModelDelta::between(&global, &train(&global, local(12, 50.0), &data)).unwrap();
    assert!(
        held.norm() < 0.8 * free.norm(),
        "mu = 50 moved {:.4}, mu = 0 moved {:.4}",
        held.norm(),
        free.norm()
    );
}

#[test]
fn a_round_produces_a_body_the_server_accepts() {
    let _turn = serial();
    let global = global_bytes();
    let data = client(DegradationSampler::Mixed);
    let opts = ClientOptions {
        patch: 16,
        max_steps: 4,
        seed: 5,
    };
    let mut round = round_config(&global);
    round.clip_norm = Some(1e-3);
    round.prox_mu = 0.1;
    let mut seen = Vec::new();
    let outcome = pollster::block_on(run_round_async(
        &global,
        &round,
        &data,
        &opts,
        &Device::flex(),
        |step, steps, loss| {
            seen.push((step, steps, loss));
            std::future::ready(true)
        },
    ))
    .unwrap();
    // 2 images hold 9 + 6 = 15 patches of 16 px: 2 steps of 8 wanted, raised to the client's
    // floor of 20, capped at the participant's budget of 4.
    assert_eq!(outcome.steps, 4);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(outcome.num_examples, 15);
    assert!(outcome.norm > 1e-3, "the delta should need clipping");
    assert!(outcome.sent_norm <= 1e-3 * (1.0 + 1e-4));
    let layout = read_model(&global).unwrap().layout;
    let parsed = parse_update(&outcome.body, &layout).unwrap();
    assert_eq!(parsed.base_version, 2);
    assert_eq!(parsed.num_examples, 15);
    assert!((parsed.norm - outcome.sent_norm).abs() < 1e-6);
    assert!(parsed.client_loss.unwrap() > 0.0);
}

#[test]
fn a_round_refuses_a_wrong_model_a_bad_config_and_stops_on_cancel() {
    let _turn = serial();
    let global = global_bytes();
    let data = client(DegradationSampler::Base(Kind::Clean));
    let opts = ClientOptions {
        patch: 16,
        max_steps: 3,
        seed: 5,
    };
    let run = |round: &RoundConfig, keep_going: bool| {
        pollster::block_on(run_round_async(
            &global,
            round,
            &data,
            &opts,
            &Device::flex(),
            |_, _, _| std::future::ready(keep_going),
        ))
    };
    let mut wrong = round_config(&global);
    wrong.model_sha256 = "0".repeat(64);
    assert!(run(&wrong, true)
        .unwrap_err()
        .to_string()
        .contains("SHA-256"));
    let mut bad = round_config(&global);
    bad.client_lr = f64::NAN;
    assert!(run(&bad, true)
        .unwrap_err()
        .to_string()
        .contains("client_lr"));
    bad = round_config(&global);
    bad.batch_size = 0;
    assert!(plan(&bad, &data, &opts).is_err());
    let cancelled = run(&round_config(&global), false).unwrap_err();
    assert!(matches!(cancelled, websr::WebSrError::Cancelled));
}

#[test]
fn the_plan_follows_epochs_examples_and_the_step_budget_within_the_client_floor() {
    let global = global_bytes();
    let data = client(DegradationSampler::Mixed);
    let mut opts = ClientOptions {
        patch: 16,
        max_steps: 1000,
        seed: 0,
    };
    let mut round = round_config(&global);
    // 15 patches, 30 epochs, batches of 8: 57 steps (above the floor of 20).
    round.local_epochs = 30;
    let p = plan(&round, &data, &opts).unwrap();
    assert_eq!((p.local.steps, p.num_examples), (57, 15));
    assert_eq!(p.local.lr, round.client_lr);
    // A server asking for little work gets the floor: 19 steps wanted, 20 run.
    round.max_examples = 5;
    let p = plan(&round, &data, &opts).unwrap();
    assert_eq!((p.local.steps, p.num_examples), (20, 5));
    round.local_epochs = 1;
    assert_eq!(plan(&round, &data, &opts).unwrap().local.steps, 20);
    // The participant's own budget may be lower: their choice.
    opts.max_steps = 10;
    assert_eq!(plan(&round, &data, &opts).unwrap().local.steps, 10);
    // Batches below the floor are refused, naming both sizes.
    round.batch_size = 4;
    let err = plan(&round, &data, &opts).unwrap_err().to_string();
    assert!(
        err.contains("batches of 4") && err.contains("at least 8"),
        "{err}"
    );
}

#[test]
fn a_client_clips_to_its_own_bound_whatever_the_round_asks() {
    let global = global_bytes();
    let mut round = round_config(&global);
    let floor = ClientFloor::DEFAULT;
    round.clip_norm = None;
    assert_eq!(floor.clip_bound(&round), floor.max_clip_norm);
    round.clip_norm = Some(1e6);
    assert_eq!(floor.clip_bound(&round), floor.max_clip_norm);
    round.clip_norm = Some(0.5);
    assert_eq!(floor.clip_bound(&round), 0.5);
}

#[test]
fn the_dirichlet_partition_deals_every_image_once_and_alpha_sets_the_skew() {
    let purity = |alpha: f64| {
        let mut rng = StdRng::seed_from_u64(9);
        let shares = dirichlet_partition(400, 8, alpha, 2, &mut rng).unwrap();
        let mut dealt: Vec<usize> = shares.iter().flatten().map(|(i, _)| *i).collect();
        dealt.sort_unstable();
        assert_eq!(dealt, (0..400).collect::<Vec<_>>());
        assert!(shares.iter().all(|s| s.len() >= 2));
        let total: [usize; 4] = shares.iter().map(kind_counts).fold([0; 4], |mut a, c| {
            a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
            a
        });
        assert_eq!(total, [100; 4]);
        // Mean share of each client's dominant kind.
        shares
            .iter()
            .map(|s| *kind_counts(s).iter().max().unwrap() as f64 / s.len() as f64)
            .sum::<f64>()
            / shares.len() as f64
    };
    let skewed = purity(0.05);
    let iid = purity(1000.0);
    assert!(skewed > 0.8, "alpha 0.05: dominant kind {skewed:.2}");
    assert!(iid < 0.4, "alpha 1000: dominant kind {iid:.2}");
    let mut rng = StdRng::seed_from_u64(1);
    assert!(dirichlet_partition(10, 8, 0.1, 2, &mut rng).is_err());
    assert!(dirichlet_partition(100, 4, 0.0, 1, &mut rng).is_err());
}
