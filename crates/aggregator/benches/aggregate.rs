//! Aggregation throughput (updates per second) for the shipped model size: synthetic deltas with
//! the tensor names and shapes of `models/wavelr-x4.safetensors`. Two tables from one run:
//!
//! 1. in memory: validating an update body, and each strategy's aggregate + server step;
//! 2. over HTTP on loopback: the real server (state in a temporary folder, every accepted update
//!    durable before its reply), `--http-updates` clients joining and submitting at once from
//!    `--http-threads` threads, one round closing when the last arrives; the rate counts from the
//!    first submission to the last reply, so it includes the round's aggregation and commit.
//!
//! `cargo bench -p websr-aggregator` (add `-- 50` for 50 updates per in-memory round).

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Barrier};
use std::time::Instant;
use websr_aggregator::strategy::*;
use websr_aggregator::tensors;
use websr_aggregator::{app, Args, Server};

// The tests' raw loopback client (`http`), shared rather than written twice.
#[path = "../tests/common/mod.rs"]
mod common;
use common::http;

/// Clients (and updates) of the HTTP round.
const HTTP_UPDATES: usize = 1000;
/// Threads the HTTP clients submit from.
const HTTP_THREADS: usize = 64;

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
    println!("\nover HTTP on loopback, {HTTP_UPDATES} clients, {HTTP_THREADS} threads, durable before each reply:");
    let http_bodies = bodies_for(&layout, HTTP_UPDATES);
    for strategy in ["fedavg", "median", "trimmed-mean"] {
        let (rate, aggregation_ms) = http_round(path, strategy, &http_bodies);
        println!(
            "{strategy:<14} {rate:>10.0} updates/s (HTTP, round included; its aggregation {aggregation_ms:.0} ms)"
        );
    }
}

/// `n` update bodies of small random deltas (norm well under the default clip bound).
fn bodies_for(layout: &tensors::Layout, n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let d: Vec<Vec<f32>> = layout
                .shapes
                .iter()
                .map(|s| {
                    (0..s.iter().product::<usize>())
                        .map(|_| rng.random_range(-1e-4..1e-4))
                        .collect()
                })
                .collect();
            tensors::encode_update(layout, &d, 0, rng.random_range(1..100), None).unwrap()
        })
        .collect()
}

/// One round of `bodies.len()` clients against a fresh server; returns accepted updates/s and
/// the round's aggregation time.
fn http_round(init: &str, strategy: &str, bodies: &[Vec<u8>]) -> (f64, f64) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let n = bodies.len().to_string();
    let args = Args::try_parse_from([
        "websr-aggregator",
        "--init",
        init,
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "--strategy",
        strategy,
        "--min-clients",
        "1",
        "--target-clients",
        &n,
        "--over-selection",
        "1",
        "--round-deadline-secs",
        "3600",
        "--max-joins-per-minute",
        "100000",
    ])
    .unwrap();
    let server = Arc::new(Server::open(args.server_config()).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(std::future::IntoFuture::into_future(axum::serve(
        listener,
        app(server.clone()),
    )));
    let tokens: Vec<String> = (0..bodies.len())
        .map(|_| {
            let (_, b) = http(addr, "POST", "/v1/join", None, b"");
            let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let t = j["token"].as_str().unwrap().to_string();
            let (code, _) = http(addr, "GET", "/v1/round", Some(&t), b"");
            assert_eq!(code, 200);
            t
        })
        .collect();
    let barrier = Barrier::new(HTTP_THREADS);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..HTTP_THREADS {
            let (tokens, barrier) = (&tokens, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in (t..bodies.len()).step_by(HTTP_THREADS) {
                    let (code, b) = http(addr, "POST", "/v1/update", Some(&tokens[i]), &bodies[i]);
                    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "  ({strategy}: {:.2} s of CPU (server and clients) in {secs:.2} s)",
        process_cpu_secs() - cpu0
    );
    assert_eq!(server.status().global_version, 1, "the round closed");
    let aggregation_ms = server.metrics().history[0].aggregation_ms;
    (bodies.len() as f64 / secs, aggregation_ms)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
