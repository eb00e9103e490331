//! API tests through `tower::ServiceExt::oneshot`: the round life cycle, over-selection,
//! deadlines, the model download, restart from the state directory, DP accounting.

mod common;

use axum::http::StatusCode;
use common::*;
use std::sync::Arc;
use websr_aggregator::tensors;
use websr_aggregator::{app, Server};

fn server(dir: &std::path::Path, extra: &[&str]) -> Arc<Server> {
    Arc::new(Server::open(config(dir, extra)).unwrap())
}

#[tokio::test]
async fn full_round_with_fedavg_reaches_the_hand_computed_model() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &["--min-clients", "2", "--target-clients", "2"]);
    let app = app(s.clone());
    let t1 = join_selected(&app).await;
    let t2 = join_selected(&app).await;

    let (st, b) = submit(&app, &t1, &delta(1.0, 2.0), 0, 1).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let r = json(&b);
    assert_eq!(r["accepted"], true);
    assert_eq!(r["round_closed"], false);
    assert_eq!(r["global_version"], 0);

    let (st, b) = submit(&app, &t2, &delta(3.0, -2.0), 0, 3).await;
    assert_eq!(st, StatusCode::OK);
    let r = json(&b);
    assert_eq!(r["round_closed"], true);
    assert_eq!(r["global_version"], 1);

    // Weighted mean: a += (1*1 + 3*3)/4 = 2.5, b += (1*2 + 3*-2)/4 = -1.
    let want = vec![vec![3.5, 4.5, 5.5, 6.5], vec![-0.5, -1.5, -1.0]];
    assert_close(&s.global(), &want, 1e-6);

    // The download is that model, keeps the original metadata and adds global_version.
    let (st, body) = call(&app, "GET", "/v1/model", Some(&t1), vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let m = tensors::read_model(&body).unwrap();
    assert_close(&m.values, &want, 1e-6);
    assert_eq!(m.metadata["format"], "websr-weights");
    assert_eq!(m.metadata["spec"], r#"{"arch":"tiny"}"#);
    assert_eq!(m.metadata["global_version"], "1");

    let (_, b) = call(&app, "GET", "/v1/round", Some(&t1), vec![]).await;
    let cfg = json(&b);
    assert_eq!(cfg["global_version"], 1);
    assert_eq!(cfg["round"], 2);
    assert_eq!(cfg["model_sha256"], tensors::sha256_hex(&body));

    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    let m = json(&b);
    assert_eq!(m["counters"]["updates_accepted"], 2);
    assert_eq!(m["history"][0]["examples"], 4);
    assert_eq!(m["history"][0]["closed_by"], "target");
    assert_eq!(m["history"][0]["mean_client_loss"], 0.25);
    assert_eq!(m["history"][0]["model_sha256"], tensors::sha256_hex(&body));
}

#[tokio::test]
async fn model_download_carries_version_and_sha_headers() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(server(dir.path(), &[]));
    let t = join_selected(&app).await;
    let req = axum::http::Request::get("/v1/model")
        .header("authorization", format!("Bearer {t}"))
        .body(axum::body::Body::empty())
        .unwrap();
    use tower::ServiceExt;
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(h["x-websr-global-version"], "0");
    assert_eq!(
        h["x-websr-model-sha256"],
        tensors::sha256_hex(&body).as_str()
    );
    assert_eq!(h["content-type"], "application/octet-stream");
    let m = tensors::read_model(&body).unwrap();
    assert_eq!(m.values, initial_values());
    assert_eq!(m.metadata["global_version"], "0");
}

#[tokio::test]
async fn over_selection_caps_the_round_and_stragglers_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // target 2, factor 1.5 -> 3 slots.
    let s = server(
        dir.path(),
        &[
            "--min-clients",
            "1",
            "--target-clients",
            "2",
            "--over-selection",
            "1.5",
        ],
    );
    let app = app(s.clone());
    let t1 = join_selected(&app).await;
    let t2 = join_selected(&app).await;
    let t3 = join_selected(&app).await;
    let (_, b) = call(&app, "POST", "/v1/join", None, vec![]).await;
    let t4 = json(&b)["token"].as_str().unwrap().to_string();
    let (_, b) = call(&app, "GET", "/v1/round", Some(&t4), vec![]).await;
    let cfg = json(&b);
    assert_eq!(cfg["selected"], false);
    assert!(cfg["retry_after_s"].as_f64().unwrap() > 0.0);
    // An unselected client cannot submit.
    let (st, _) = submit(&app, &t4, &delta(1.0, 1.0), 0, 1).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    for t in [&t1, &t2] {
        let (st, _) = submit(&app, t, &delta(1.0, 1.0), 0, 1).await;
        assert_eq!(st, StatusCode::OK);
    }
    assert_eq!(s.status().global_version, 1);
    assert_eq!(s.metrics().history[0].stragglers_dropped, 1);
    // The straggler's late update is refused as stale.
    let (st, b) = submit(&app, &t3, &delta(1.0, 1.0), 0, 1).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(json(&b)["error"].as_str().unwrap().contains("stale"));
}

#[tokio::test]
async fn deadline_closes_with_min_clients_or_extends_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        &[
            "--min-clients",
            "2",
            "--target-clients",
            "5",
            "--round-deadline-secs",
            "60",
        ],
    );
    let app = app(s.clone());
    let t1 = join_selected(&app).await;
    let t2 = join_selected(&app).await;
    let t3 = join_selected(&app).await;
    let (st, _) = submit(&app, &t1, &delta(2.0, 0.0), 0, 1).await;
    assert_eq!(st, StatusCode::OK);

    // Deadline with 1 < min accepted: the update is kept, silent clients are released.
    let deadline = s.status().deadline_unix_ms;
    assert!(!s.tick_at(deadline - 1).unwrap());
    assert!(!s.tick_at(deadline + 1).unwrap());
    let st1 = s.status();
    assert_eq!((st1.global_version, st1.accepted, st1.selected), (0, 1, 1));
    assert!(st1.deadline_unix_ms > deadline);
    assert_eq!(s.metrics().counters.deadline_extensions, 1);
    // t3 lost its slot, asks again and gets one.
    let (_, b) = call(&app, "GET", "/v1/round", Some(&t3), vec![]).await;
    assert_eq!(json(&b)["selected"], true);
    let (st, _) = submit(&app, &t3, &delta(4.0, 0.0), 0, 1).await;
    assert_eq!(st, StatusCode::OK);

    // Next deadline with 2 >= min: the round closes without t2 (a dropped straggler).
    assert!(s.tick_at(st1.deadline_unix_ms + 1).unwrap());
    let rec = &s.metrics().history[0];
    assert_eq!(rec.closed_by, "deadline");
    assert_eq!(rec.clients, vec![1, 3]);
    assert_close(
        &s.global(),
        &[vec![4.0, 5.0, 6.0, 7.0], vec![0.5, -0.5, 0.0]],
        1e-6,
    );
    let (st, _) = submit(&app, &t2, &delta(1.0, 1.0), 0, 1).await;
    assert_eq!(st, StatusCode::CONFLICT);
}

#[tokio::test]
async fn restart_resumes_the_open_round_and_keeps_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--min-clients", "3", "--target-clients", "3"];
    let (t1, t2, t3);
    {
        let s = server(dir.path(), &flags);
        let app = app(s.clone());
        t1 = join_selected(&app).await;
        t2 = join_selected(&app).await;
        t3 = join_selected(&app).await;
        for (t, x) in [(&t1, 3.0), (&t2, 6.0)] {
            let (st, _) = submit(&app, t, &delta(x, 0.0), 0, 1).await;
            assert_eq!(st, StatusCode::OK);
        }
    }
    let s = server(dir.path(), &flags);
    let app = app(s.clone());
    assert_eq!(s.status().accepted, 2);
    let (st, _) = submit(&app, &t1, &delta(3.0, 0.0), 0, 1).await;
    assert_eq!(st, StatusCode::CONFLICT, "t1's update survived the restart");
    let (st, _) = submit(&app, &t3, &delta(0.0, 3.0), 0, 1).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.status().global_version, 1);
    assert_close(
        &s.global(),
        &[vec![4.0, 5.0, 6.0, 7.0], vec![1.5, 0.5, 1.0]],
        1e-6,
    );
    drop(app);
    drop(s);
    // And the committed version survives too.
    let s = server(dir.path(), &flags);
    assert_eq!(s.status().global_version, 1);
    assert_eq!(s.metrics().history.len(), 1);
    assert_close(
        &s.global(),
        &[vec![4.0, 5.0, 6.0, 7.0], vec![1.5, 0.5, 1.0]],
        1e-6,
    );
}

#[tokio::test]
async fn fedadam_moments_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--strategy",
        "fedadam",
        "--min-clients",
        "1",
        "--target-clients",
        "1",
        "--server-lr",
        "0.1",
        "--tau",
        "0.1",
    ];
    let s = server(dir.path(), &flags);
    let app = app(s.clone());
    let t = join_selected(&app).await;
    let (st, _) = submit(&app, &t, &delta(0.5, 0.5), 0, 1).await;
    assert_eq!(st, StatusCode::OK);
    drop(app);
    drop(s);
    let s = server(dir.path(), &flags);
    let app = websr_aggregator::app(s.clone());
    let (_, b) = call(&app, "GET", "/v1/round", Some(&t), vec![]).await;
    assert_eq!(json(&b)["selected"], true);
    let (st, _) = submit(&app, &t, &delta(-0.5, -0.5), 1, 1).await;
    assert_eq!(st, StatusCode::OK);
    // Two FedAdam steps by hand (eta 0.1, b1 0.9, b2 0.99, tau 0.1, v0 = tau^2 = 0.01):
    // step 1: m = 0.05, v = 0.0124, x += 0.1 * 0.05 / (sqrt(0.0124) + 0.1) = 0.0236568
    // step 2: m = -0.005, v = 0.014776, x += 0.1 * -0.005 / (sqrt(0.014776) + 0.1) = -0.0022568
    let step = 0.023_656_8f32 - 0.002_256_8;
    let want: Vec<Vec<f32>> = initial_values()
        .iter()
        .map(|t| t.iter().map(|x| x + step).collect())
        .collect();
    assert_close(&s.global(), &want, 2e-6);
}

#[tokio::test]
async fn dp_noise_and_accountant_are_reported_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        &[
            "--min-clients",
            "2",
            "--target-clients",
            "2",
            "--clip-norm",
            "10",
            "--noise-multiplier",
            "1e-6",
        ],
    );
    let app = app(s.clone());
    let t1 = join_selected(&app).await;
    let t2 = join_selected(&app).await;
    // With noise the mean is unweighted: num_examples 1 and 100 weigh the same.
    submit(&app, &t1, &delta(1.0, 0.0), 0, 1).await;
    let (st, _) = submit(&app, &t2, &delta(3.0, 0.0), 0, 100).await;
    assert_eq!(st, StatusCode::OK);
    assert_close(
        &s.global(),
        &[vec![3.0, 4.0, 5.0, 6.0], vec![0.5, -0.5, 0.0]],
        1e-3,
    );
    let rec = &s.metrics().history[0];
    // Replace-one sensitivity of the mean: 2C/n.
    assert!((rec.noise_std - 1e-6 * 2.0 * 10.0 / 2.0).abs() < 1e-15);
    // Nothing computed from the updates before the noise is published.
    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    let published = &json(&b)["history"][0];
    for field in ["delta_norm", "mean_client_loss", "examples"] {
        assert!(published[field].is_null(), "{field}: {published}");
    }
    let eps = websr_aggregator::dp::epsilon(websr_aggregator::dp::rdp_rho(1e-6), 1e-5).unwrap();
    assert_eq!(rec.epsilon_round, Some(eps));
    assert_eq!(rec.epsilon_total, Some(eps));
    let (_, b) = call(&app, "GET", "/v1/status", None, vec![]).await;
    assert_eq!(json(&b)["dp"]["rounds"], 1);
}

#[tokio::test]
async fn flags_that_contradict_each_other_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (
            &["--min-clients", "3", "--target-clients", "2"][..],
            "--target-clients",
        ),
        (
            &["--strategy", "krum", "--krum-f", "1", "--min-clients", "4"][..],
            "--min-clients >= 5",
        ),
        (&["--noise-multiplier", "1"][..], "--clip-norm"),
        (
            &[
                "--noise-multiplier",
                "1",
                "--clip-norm",
                "1",
                "--strategy",
                "median",
            ][..],
            "not a mean",
        ),
        (&["--trim-beta", "0.5"][..], "--trim-beta"),
    ] {
        let err = Server::open(config(dir.path(), flags))
            .err()
            .expect("refused");
        assert!(err.to_string().contains(needle), "{flags:?}: {err}");
    }
}

#[tokio::test]
async fn unknown_routes_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(server(dir.path(), &[]));
    let (st, b) = call(&app, "GET", "/v1/nope", None, vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(json(&b)["error"].is_string());
    let (st, b) = call(&app, "GET", "/v1/update", None, vec![]).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert!(json(&b)["error"].is_string());
}

#[tokio::test]
async fn training_stops_after_the_configured_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        dir.path(),
        &[
            "--min-clients",
            "1",
            "--target-clients",
            "1",
            "--rounds",
            "1",
        ],
    );
    let app = app(s.clone());
    let t = join_selected(&app).await;
    let (st, _) = submit(&app, &t, &delta(1.0, 1.0), 0, 1).await;
    assert_eq!(st, StatusCode::OK);
    let (_, b) = call(&app, "GET", "/v1/round", Some(&t), vec![]).await;
    let cfg = json(&b);
    assert_eq!(
        (cfg["finished"].as_bool(), cfg["selected"].as_bool()),
        (Some(true), Some(false))
    );
    let (st, b) = submit(&app, &t, &delta(1.0, 1.0), 1, 1).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(json(&b)["error"].as_str().unwrap().contains("finished"));
}

#[tokio::test]
async fn the_default_init_is_the_embedded_wavelr_x4() {
    // Tests run in crates/aggregator, where models/wavelr-x4.safetensors does not exist.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let a = <websr_aggregator::Args as clap::Parser>::try_parse_from([
        "websr-aggregator",
        "--state-dir",
        &state,
    ])
    .unwrap()
    .server_config();
    assert!(!a.init.exists());
    let s = Arc::new(Server::open(a).unwrap());
    assert_eq!(s.layout().num_params(), 146_832);
    let app = app(s.clone());
    let t = join_selected(&app).await;
    let (_, body) = call(&app, "GET", "/v1/model", Some(&t), vec![]).await;
    let m = tensors::read_model(&body).unwrap();
    assert_eq!(m.metadata["format"], "websr-weights");
    assert!(m.metadata["spec"].contains("wavelr"));
    assert_eq!(m.metadata["global_version"], "0");
    // Body limit: twice the model as served (f32, though the embedded init is f16) plus 64 KiB,
    // so a full-size update fits.
    assert!(body.len() > 4 * 146_832);
    assert_eq!(s.max_body_bytes(), 2 * body.len() + 65_536);
    let d = s.layout().zeros();
    let body = tensors::encode_update(s.layout(), &d, 0, 10, None).unwrap();
    let (st, b) = call(&app, "POST", "/v1/update", Some(&t), body).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
}

/// A preflight from `origin` to `/v1/update`, and the allow-origin header of the answer.
async fn preflight(app: &axum::Router, origin: &str) -> Option<String> {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/v1/update")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn browsers_from_allowed_origins_only_may_call_the_api() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let closed = app(server(dirs[0].path(), &[]));
    assert_eq!(preflight(&closed, "https://websr.example").await, None);

    let open = app(server(
        dirs[1].path(),
        &["--allow-origin", "https://websr.example"],
    ));
    assert_eq!(
        preflight(&open, "https://websr.example").await.as_deref(),
        Some("https://websr.example")
    );
    assert_eq!(preflight(&open, "https://evil.example").await, None);

    let bad = Server::open(config(
        dirs[2].path(),
        &["--allow-origin", "https://a.example\n"],
    ));
    assert!(bad.is_err());
}
