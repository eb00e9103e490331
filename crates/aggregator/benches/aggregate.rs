//! Aggregation throughput (updates per second) for the shipped model size: synthetic deltas with
//! the tensor names and shapes of `models/wavelr-x4.safetensors`.
//!
//! `cargo bench -p websr-aggregator` (add `-- 50` for 50 updates per round).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use websr_aggregator::strategy::*;
use websr_aggregator::tensors;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/wavelr-x4.safetensors"
    );
    let model = tensors::read_model(&std::fs::read(path).expect("models/wavelr-x4.safetensors"))
        .expect("valid model");
    let layout = model.layout;
    let mut rng = StdRng::seed_from_u64(0);
    let updates: Vec<Update> = (0..n)
        .map(|_| Update {
            tensors: layout
                .shapes
                .iter()
                .map(|s| {
                    (0..s.iter().product::<usize>())
                        .map(|_| rng.random_range(-1e-3..1e-3))
                        .collect()
                })
                .collect(),
            num_examples: rng.random_range(1..100),
        })
        .collect();
    let bodies: Vec<Vec<u8>> = updates
        .iter()
        .map(|u| tensors::encode_update(&layout, &u.tensors, 0, u.num_examples, None).unwrap())
        .collect();
    println!(
        "wavelr-x4 layout: {} tensors, {} params; {n} updates per round",
        layout.names.len(),
        layout.num_params()
    );
    let adaptive = Adaptive {
        eta: 0.01,
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-3,
    };
    let strategies: Vec<Box<dyn Strategy>> = vec![
        Box::new(FedAvg { server_lr: 1.0 }),
        Box::new(FedAdam(adaptive)),
        Box::new(FedYogi(adaptive)),
        Box::new(Median { server_lr: 1.0 }),
        Box::new(TrimmedMean {
            beta: 0.1,
            server_lr: 1.0,
        }),
        Box::new(Krum {
            f: 1,
            server_lr: 1.0,
        }),
    ];
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        for b in &bodies {
            std::hint::black_box(tensors::parse_update(b, &layout).unwrap());
        }
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{:<14} {:>10.2} ms/round {:>10.0} updates/s",
        "validate",
        secs * 1e3,
        n as f64 / secs
    );
    for s in &strategies {
        let mut global = model.values.clone();
        let mut opt = OptState::default();
        let t = Instant::now();
        for _ in 0..reps {
            let d = s.aggregate(&updates).unwrap();
            s.apply(&mut global, &d, &mut opt);
        }
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{:<14} {:>10.2} ms/round {:>10.0} updates/s",
            s.name(),
            secs * 1e3,
            n as f64 / secs
        );
    }
}
