//! The aggregator's privacy and safety claims, each checked where it can fail: noise of the
//! stated size reaches the model, clipping is on by default, one client cannot take the round's
//! weight, a non-finite aggregate is set aside while the server keeps serving, joins are rate
//! limited, tokens expire, and the state does not grow with every join.

mod common;

use axum::http::StatusCode;
use common::*;
use std::collections::HashMap;
use std::sync::Arc;
use websr_aggregator::store::Store;
use websr_aggregator::tensors::{self, Layout};
use websr_aggregator::update_log::UpdateLog;
use websr_aggregator::{app, Error, Server};

fn server(dir: &std::path::Path, extra: &[&str]) -> Arc<Server> {
    Arc::new(Server::open(config(dir, extra)).unwrap())
}

/// A server on a model with one tensor of `params` zeros (large enough to measure a noise
/// level), seeded, clipping as `extra` says.
fn wide_server(dir: &std::path::Path, params: usize, extra: &[&str]) -> (Arc<Server>, Layout) {
    let layout = Layout {
        names: vec!["w".into()],
        shapes: vec![vec![params]],
    };
    let bytes = tensors::serialize(&layout, &[vec![0.0; params]], &HashMap::new()).unwrap();
    let init = dir.join("wide.safetensors");
    std::fs::write(&init, bytes).unwrap();
    let config = config_for(&init, &dir.join("wide-state"), extra);
    (Arc::new(Server::open(config).unwrap()), layout)
}

#[tokio::test]
async fn noise_of_the_stated_size_reaches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let params = 40_000;
    let (s, layout) = wide_server(
        dir.path(),
        params,
        &[
            "--min-clients",
            "4",
            "--target-clients",
            "4",
            "--clip-norm",
            "0.2",
            "--noise-multiplier",
            "0.5",
        ],
    );
    let app = app(s.clone());
    // Four clients send the same small delta: the mean is that delta, the rest is noise.
    let shift = 1e-4f32;
    for _ in 0..4 {
        let token = join_selected(&app).await;
        let body = tensors::encode_update(&layout, &[vec![shift; params]], 0, 1, None).unwrap();
        let (st, b) = call(&app, "POST", "/v1/update", Some(&token), body).await;
        assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
    let global = &s.global()[0];
    let n = params as f64;
    let mean = global.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (global
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    // z * 2C / n = 0.5 * 0.4 / 4 = 0.05; the standard error of the estimate is 0.05/sqrt(2n).
    let want = 0.5 * 2.0 * 0.2 / 4.0;
    assert!(
        (std - want).abs() < 0.02 * want,
        "noise std {std}, stated {want}"
    );
    assert!(
        (mean - f64::from(shift)).abs() < 4.0 * want / n.sqrt(),
        "mean {mean}"
    );
    assert_eq!(s.metrics().history[0].noise_std, want);
}

#[tokio::test]
async fn clipping_is_on_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        &[
            "--default-clip",
            "--min-clients",
            "1",
            "--target-clients",
            "2",
        ],
    );
    assert_eq!(s.config().clip_norm, Some(1.0));
    let app = app(s.clone());
    let token = join_selected(&app).await;
    // delta(1, 1) has norm sqrt(7) > 1.
    let (st, b) = submit(&app, &token, &delta(1.0, 1.0), 0, 1).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json(&b)["error"]
        .as_str()
        .unwrap()
        .contains("clipping bound 1"));
    let (st, _) = submit(&app, &token, &delta(0.1, 0.1), 0, 1).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn one_client_cannot_take_the_rounds_weight_by_claiming_examples() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--min-clients", "3", "--target-clients", "3"]);
    let app = app(s.clone());
    for (x, claim) in [(0.0, 10), (0.0, 10), (1.0, 1_000_000)] {
        let token = join_selected(&app).await;
        let (st, _) = submit(&app, &token, &delta(x, 0.0), 0, claim).await;
        assert_eq!(st, StatusCode::OK);
    }
    // Weights 10, 10 and 4 x 10 = 40 (not 1,000,000): the mean moves `a` by 40/60.
    let a = &s.global()[0];
    assert!((a[0] - (1.0 + 40.0 / 60.0)).abs() < 1e-6, "{a:?}");
}

/// FedAvg sums updates as they arrive and drops them; the cap, known only when the round closes,
/// reads the capped client's update back from the round's log. Here the summed updates of a
/// first run come back from the log on a restart, and the capped one is read again at the close.
#[tokio::test]
async fn the_weight_cap_holds_for_updates_summed_before_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--min-clients", "4", "--target-clients", "4"];
    let first = server(dir.path(), &flags);
    let app1 = app(first.clone());
    for (x, claim) in [(2.0, 5_000), (0.0, 10)] {
        let token = join_selected(&app1).await;
        let (st, _) = submit(&app1, &token, &delta(x, 0.5), 0, claim).await;
        assert_eq!(st, StatusCode::OK);
    }
    drop(app1);
    drop(first);
    let s = server(dir.path(), &flags);
    assert_eq!(s.status().accepted, 2);
    let app = app(s.clone());
    for (x, claim) in [(0.0, 10), (-1.0, 30)] {
        let token = join_selected(&app).await;
        let (st, _) = submit(&app, &token, &delta(x, 0.5), 0, claim).await;
        assert_eq!(st, StatusCode::OK);
    }
    assert_eq!(s.status().global_version, 1);
    // Claims 5,000, 10, 10, 30: median 10, cap 40. Weights 40, 10, 10, 30 (sum 90).
    let want_a = 1.0 + (40.0 * 2.0 - 30.0) / 90.0;
    let want_b = 0.5 + 0.5;
    let g = s.global();
    assert!((g[0][0] - want_a).abs() < 1e-6, "{:?}", g[0]);
    assert!((g[1][0] - want_b).abs() < 1e-6, "{:?}", g[1]);
}

/// A client whose first write failed (and who was told so) may retry, leaving two records in the
/// round's log; a restart counts only the last one, once, in the round's running sum.
#[tokio::test]
async fn a_client_logged_twice_counts_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--min-clients", "2", "--target-clients", "2"];
    let first = server(dir.path(), &flags);
    let app1 = app(first.clone());
    let token = join_selected(&app1).await;
    let (st, b) = submit(&app1, &token, &delta(1.0, 0.0), 0, 10).await;
    assert_eq!(st, StatusCode::OK);
    let client = json(&b)["client_id"].as_u64().unwrap();
    drop(app1);
    drop(first);
    // The same client's later record, as a retried write leaves it, with another delta.
    let store = Store::open(dir.path().join("state")).unwrap();
    let retried = update_body(&delta(0.5, 0.0), 0, 10);
    UpdateLog::default()
        .append(&store.update_log_path(0), client, &retried)
        .unwrap();
    let s = server(dir.path(), &flags);
    assert_eq!(s.status().accepted, 1);
    let app = app(s.clone());
    let token = join_selected(&app).await;
    let (st, _) = submit(&app, &token, &delta(0.0, 0.0), 0, 10).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.status().global_version, 1);
    // The mean of 0.5 and 0 moves `a` by 0.25 (by 0.75 were both records summed).
    let a = s.global()[0][0];
    assert!((a - 1.25).abs() < 1e-6, "{a}");
}

#[tokio::test]
async fn a_non_finite_aggregate_is_quarantined_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--min-clients", "1", "--target-clients", "1"];
    let s = server(dir.path(), &flags);
    let app = app(s.clone());
    let token = join_selected(&app).await;
    // Each update is finite; the second round's model overflows to infinity.
    let huge = delta(3e38, 0.0);
    let (st, _) = submit(&app, &token, &huge, 0, 1).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = call(&app, "GET", "/v1/round", Some(&token), vec![]).await;
    assert_eq!(
        (st, json(&b)["global_version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let before = s.global();
    let (st, b) = submit(&app, &token, &huge, 1, 1).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(json(&b)["round_closed"], false);
    assert_eq!(s.global(), before, "the model did not change");
    let m = s.metrics();
    assert_eq!(m.counters.rounds_quarantined, 1);
    assert_eq!(m.counters.rounds_completed, 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("state/quarantine"))
            .unwrap()
            .count(),
        1
    );
    // Still serving, and the same version takes a sane update (after asking for a slot again).
    let (st, b) = call(&app, "GET", "/v1/round", Some(&token), vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(json(&b)["selected"], true);
    assert_eq!(json(&b)["submitted"], false);
    let (st, b) = submit(&app, &token, &delta(0.5, 0.0), 1, 1).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["global_version"], 2);
    // And a restart works.
    drop(app);
    drop(s);
    let s = Server::open(config(dir.path(), &flags)).unwrap();
    assert_eq!(s.status().global_version, 2);
}

#[tokio::test]
async fn joins_are_rate_limited_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--max-joins-per-minute", "3"]);
    let app = app(s.clone());
    for _ in 0..3 {
        let (st, _) = call(&app, "POST", "/v1/join", None, vec![]).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/join")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    // A minute later the bucket is full again.
    let later = websr_aggregator::state::now_ms() + 60_000;
    assert!(s.join_at(later).is_ok());
    assert_eq!(s.metrics().counters.joins, 4);
}

#[tokio::test]
async fn tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--token-ttl-secs", "10"]);
    let t0 = websr_aggregator::state::now_ms();
    let joined = s.join_at(t0).unwrap();
    assert_eq!(joined.expires_unix_ms, t0 + 10_000);
    assert!(s.round_config_at(Some(&joined.token), t0 + 9_000).is_ok());
    let err = s
        .round_config_at(Some(&joined.token), t0 + 10_000)
        .unwrap_err();
    assert!(matches!(err, Error::TokenExpired), "{err}");
    assert!(err.to_string().contains("join"), "{err}");
}

#[tokio::test]
async fn joins_append_to_a_log_instead_of_rewriting_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]);
    let state = dir.path().join("state/state.json");
    s.join().unwrap();
    let size_after_one = std::fs::metadata(&state).unwrap().len();
    let tokens: Vec<String> = (0..200).map(|_| s.join().unwrap().token).collect();
    assert_eq!(std::fs::metadata(&state).unwrap().len(), size_after_one);
    let log = std::fs::read_to_string(dir.path().join("state/clients.log")).unwrap();
    assert_eq!(log.lines().count(), 201);
    // The log is what a restart reads the tokens from.
    drop(s);
    let s = server(dir.path(), &[]);
    assert!(s.client_id(Some(&tokens[199])).is_ok());
    assert_eq!(s.join().unwrap().client_id, 202);
}

#[tokio::test]
async fn a_schema_1_state_with_clients_inside_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]);
    let joined = s.join().unwrap();
    drop(s);
    // Rewrite the state as the previous release did: clients inside, no log.
    let path = dir.path().join("state/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["schema"] = 1.into();
    state["clients"] = serde_json::json!([[
        joined.client_id,
        tensors::sha256_hex(joined.token.as_bytes())
    ]]);
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::remove_file(dir.path().join("state/clients.log")).unwrap();
    let s = server(dir.path(), &[]);
    assert_eq!(s.client_id(Some(&joined.token)).unwrap(), joined.client_id);
    assert_eq!(s.join().unwrap().client_id, joined.client_id + 1);
}
