//! Buffered asynchronous rounds (`--buffered K`, FedBuff) through `tower::ServiceExt::oneshot`:
//! no selection cap, no deadline, stale updates weighted by 1/sqrt(1 + s), the staleness limit,
//! a restart with a half-full buffer, and the flags it cannot be combined with.

mod common;

use axum::http::StatusCode;
use axum::Router;
use clap::Parser;
use common::*;
use std::sync::Arc;
use websr_aggregator::{app, Args, Error, Server};

fn server(dir: &std::path::Path, extra: &[&str]) -> Arc<Server> {
    Arc::new(Server::open(config(dir, extra)).unwrap())
}

async fn join(app: &Router) -> String {
    let (s, b) = call(app, "POST", "/v1/join", None, vec![]).await;
    assert_eq!(s, StatusCode::CREATED);
    json(&b)["token"].as_str().unwrap().to_string()
}

async fn round(app: &Router, token: &str) -> serde_json::Value {
    let (s, b) = call(app, "GET", "/v1/round", Some(token), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    json(&b)
}

async fn accept(app: &Router, token: &str, d: &[Vec<f32>], base: u64, n: u64) -> bool {
    let (st, b) = submit(app, token, d, base, n).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    json(&b)["round_closed"].as_bool().unwrap()
}

/// The model after version 1 of [`to_version_1`]: a += (1 + 2 + 3) / 3.
fn version_1_model() -> Vec<Vec<f32>> {
    vec![vec![3.0, 4.0, 5.0, 6.0], vec![0.5, -0.5, 0.0]]
}

/// Three fresh updates of one example each on version 0 close it.
async fn to_version_1(app: &Router, tokens: &[String]) {
    assert!(!accept(app, &tokens[0], &delta(1.0, 0.0), 0, 1).await);
    assert!(!accept(app, &tokens[1], &delta(2.0, 0.0), 0, 1).await);
    assert!(accept(app, &tokens[2], &delta(3.0, 0.0), 0, 1).await);
}

/// Version 2 from version 1 with t4's update of base 0 (s = 1, 2 examples, delta (2, 2)) and
/// t1's and t2's of base 1 (1 example each, deltas (1, -1) and (0, 1)). FedAvg weights
/// 2/4, 1/4, 1/4; the stale delta is scaled by 1/sqrt(2) = 0.70710678:
/// a += 0.5 * 2 * 0.70710678 + 0.25 * 1 + 0.25 * 0 = 0.95710678
/// b += 0.5 * 2 * 0.70710678 - 0.25 * 1 + 0.25 * 1 = 0.70710678
fn version_2_model() -> Vec<Vec<f32>> {
    let db = std::f32::consts::FRAC_1_SQRT_2;
    let da = db + 0.25;
    vec![
        vec![3.0 + da, 4.0 + da, 5.0 + da, 6.0 + da],
        vec![0.5 + db, -0.5 + db, db],
    ]
}

#[tokio::test]
async fn k_updates_from_any_clients_close_the_version_without_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // The synchronous settings would select 2 clients per round and close at a 1 ms deadline
    // with one update: --buffered ignores them.
    let s = server(
        dir.path(),
        &[
            "--buffered",
            "3",
            "--min-clients",
            "1",
            "--target-clients",
            "2",
            "--over-selection",
            "1",
            "--round-deadline-secs",
            "0.001",
        ],
    );
    let app = app(s.clone());
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let t = join(&app).await;
        let cfg = round(&app, &t).await;
        assert_eq!(cfg["selected"], true, "no selection cap");
        assert_eq!(cfg["target_clients"], 3);
        tokens.push(t);
    }
    assert!(!accept(&app, &tokens[0], &delta(1.0, 0.0), 0, 1).await);
    let cfg = round(&app, &tokens[0]).await;
    assert_eq!(cfg["selected"], false, "one update per client and version");
    assert_eq!(cfg["submitted"], true);
    let (st, _) = submit(&app, &tokens[0], &delta(1.0, 0.0), 0, 1).await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a second update for the same version"
    );
    assert!(!accept(&app, &tokens[1], &delta(2.0, 0.0), 0, 1).await);
    // Long past the deadline: two buffered updates do not make a version.
    assert!(!s
        .tick_at(websr_aggregator::state::now_ms() + 3_600_000)
        .unwrap());
    assert_eq!(s.status().global_version, 0);
    assert_eq!(s.status().accepted, 2);
    // Client 5 never asked for the round: it may submit all the same.
    assert!(accept(&app, &tokens[4], &delta(3.0, 0.0), 0, 1).await);
    assert_eq!(s.status().global_version, 1);
    assert_close(&s.global(), &version_1_model(), 1e-6);
    let cfg = round(&app, &tokens[0]).await;
    assert_eq!(cfg["selected"], true, "a new version opens for everyone");
    assert_eq!(cfg["submitted"], false);
    let m = s.metrics();
    assert_eq!(m.history[0].closed_by, "buffer");
    assert_eq!(m.history[0].clients, vec![1, 2, 5]);
}

#[tokio::test]
async fn a_stale_update_is_accepted_and_weighted_by_one_over_sqrt_two() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--buffered", "3"]);
    let app = app(s.clone());
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(join(&app).await);
    }
    to_version_1(&app, &tokens[..3]).await;
    // t4 trained from version 0 and submits while version 1 is current: s = 1.
    assert!(!accept(&app, &tokens[3], &delta(2.0, 2.0), 0, 2).await);
    assert!(!accept(&app, &tokens[0], &delta(1.0, -1.0), 1, 1).await);
    assert!(accept(&app, &tokens[1], &delta(0.0, 1.0), 1, 1).await);
    assert_eq!(s.status().global_version, 2);
    assert_close(&s.global(), &version_2_model(), 1e-5);
}

#[tokio::test]
async fn updates_staler_than_the_limit_and_future_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--buffered", "1", "--max-staleness", "1"]);
    let app = app(s.clone());
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(join(&app).await);
    }
    assert!(accept(&app, &tokens[0], &delta(1.0, 0.0), 0, 1).await);
    assert!(
        accept(&app, &tokens[1], &delta(1.0, 0.0), 0, 1).await,
        "s = 1 is allowed"
    );
    assert_eq!(s.status().global_version, 2);
    let (st, b) = submit(&app, &tokens[2], &delta(1.0, 0.0), 0, 1).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let msg = json(&b)["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("staleness of 2") && msg.contains("limit of 1"),
        "{msg}"
    );
    let (st, _) = submit(&app, &tokens[2], &delta(1.0, 0.0), 3, 1).await;
    assert_eq!(st, StatusCode::CONFLICT, "a future version");
    assert_eq!(s.status().global_version, 2);
    assert_eq!(s.metrics().counters.updates_rejected["version"], 2);
    // The client fetches version 2 and is accepted again.
    assert!(accept(&app, &tokens[2], &delta(1.0, 0.0), 2, 1).await);
}

#[tokio::test]
async fn a_restart_keeps_the_buffer_and_its_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--buffered", "3"]);
    let app = app(s.clone());
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(join(&app).await);
    }
    to_version_1(&app, &tokens[..3]).await;
    assert!(!accept(&app, &tokens[3], &delta(2.0, 2.0), 0, 2).await);
    assert!(!accept(&app, &tokens[0], &delta(1.0, -1.0), 1, 1).await);
    drop(app);
    drop(s);

    let s = server(dir.path(), &["--buffered", "3"]);
    let app = websr_aggregator::app(s.clone());
    assert_eq!(s.status().global_version, 1);
    assert_eq!(s.status().accepted, 2, "both buffered updates survived");
    let cfg = round(&app, &tokens[3]).await;
    assert_eq!(cfg["submitted"], true);
    assert_eq!(cfg["selected"], false);
    let (st, _) = submit(&app, &tokens[3], &delta(2.0, 2.0), 1, 2).await;
    assert_eq!(st, StatusCode::CONFLICT, "still one update per version");
    assert!(accept(&app, &tokens[1], &delta(0.0, 1.0), 1, 1).await);
    assert_eq!(s.status().global_version, 2);
    // The same model as without the restart: the stale update kept its 1/sqrt(2).
    assert_close(&s.global(), &version_2_model(), 1e-5);
}

#[test]
fn buffered_mode_refuses_what_it_cannot_combine_with() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &[&str]| match Server::open(config(dir.path(), extra)) {
        Err(Error::Config(msg)) => msg,
        Err(e) => panic!("{extra:?}: not a config error: {e}"),
        Ok(_) => panic!("{extra:?} was accepted"),
    };
    let msg = refused(&[
        "--buffered",
        "3",
        "--secure-aggregation",
        "--clip-norm",
        "1",
    ]);
    assert!(
        msg.contains("--buffered") && msg.contains("--secure-aggregation"),
        "{msg}"
    );
    let msg = refused(&[
        "--buffered",
        "3",
        "--noise-multiplier",
        "1",
        "--clip-norm",
        "1",
    ]);
    assert!(
        msg.contains("--buffered") && msg.contains("--noise-multiplier"),
        "{msg}"
    );
    let msg = refused(&["--buffered", "0"]);
    assert!(msg.contains("--buffered"), "{msg}");
    let msg = refused(&[
        "--buffered",
        "2",
        "--strategy",
        "krum",
        "--krum-f",
        "0",
        "--min-clients",
        "3",
    ]);
    assert!(msg.contains("--buffered >= 3"), "{msg}");
    // --max-staleness means nothing without --buffered.
    assert!(Args::try_parse_from(["websr-aggregator", "--max-staleness", "2"]).is_err());
    // Nothing was written by the refused configurations.
    assert!(!dir.path().join("state").join("state.json").exists());
}
