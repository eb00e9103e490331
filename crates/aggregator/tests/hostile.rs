//! Every hostile input is refused with a 4xx and `{"error": ...}` and changes nothing: not the
//! round, not the model, not a byte of the state directory.

mod common;

use axum::http::StatusCode;
use common::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use websr_aggregator::tensors::{self, Layout};
use websr_aggregator::{app, Server};

/// Every file under the state directory with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(p: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn raw_body(tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>, md: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let md: HashMap<String, String> = md
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(md)).unwrap()
}

/// (name, token, body, expected status, expected words in the error).
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn meta(base: &str) -> Vec<(&str, &str)> {
    vec![("base_version", base), ("num_examples", "4")]
}

#[tokio::test]
async fn hostile_updates_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &[
            "--min-clients",
            "3",
            "--target-clients",
            "3",
            "--over-selection",
            "1",
            "--clip-norm",
            "5",
            "--max-body-bytes",
            "4096",
            "--round-deadline-secs",
            "3600",
        ],
    );
    let state_dir = config.state_dir.clone();
    let s = Arc::new(Server::open(config).unwrap());
    let app = app(s.clone());

    // Round 1 completes, so that version 0 is stale; in round 2 t3 has already submitted
    // and t4 finds the round full.
    let (t1, t2, t3) = (
        join_selected(&app).await,
        join_selected(&app).await,
        join_selected(&app).await,
    );
    let round1_t3 = update_body(&delta(0.5, 0.5), 0, 4);
    for (t, body) in [
        (&t1, update_body(&delta(0.5, 0.5), 0, 4)),
        (&t2, update_body(&delta(0.5, 0.5), 0, 4)),
        (&t3, round1_t3.clone()),
    ] {
        let (st, _) = call(&app, "POST", "/v1/update", Some(t), body).await;
        assert_eq!(st, StatusCode::OK);
    }
    for t in [&t1, &t2, &t3] {
        let (_, b) = call(&app, "GET", "/v1/round", Some(t), vec![]).await;
        assert_eq!(json(&b)["selected"], true);
    }
    let (_, b) = call(&app, "POST", "/v1/join", None, vec![]).await;
    let t4 = json(&b)["token"].as_str().unwrap().to_string();
    let (_, b) = call(&app, "GET", "/v1/round", Some(&t4), vec![]).await;
    assert_eq!(json(&b)["selected"], false);
    let (st, _) = call(
        &app,
        "POST",
        "/v1/update",
        Some(&t3),
        update_body(&delta(0.1, 0.1), 1, 4),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    let good = update_body(&delta(0.1, 0.1), 1, 4);
    let a = |v: f32| ("a", Dtype::F32, vec![2, 2], f32_bytes(&[v; 4]));
    let b = |v: f32| ("b", Dtype::F32, vec![3], f32_bytes(&[v; 3]));
    let big_layout = Layout {
        names: vec!["a".into(), "b".into()],
        shapes: vec![vec![2, 2], vec![3]],
    };
    let mut nan = delta(0.1, 0.1);
    nan[1][2] = f32::NAN;
    let mut inf = delta(0.1, 0.1);
    inf[0][0] = f32::NEG_INFINITY;

    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            "wrong token",
            Some("0123abcd"),
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            "oversized body",
            Some(&t1),
            vec![0u8; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "oversized, no token",
            None,
            vec![0u8; 5000],
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            "empty body",
            Some(&t1),
            vec![],
            StatusCode::BAD_REQUEST,
            "safetensors",
        ),
        (
            "garbage",
            Some(&t1),
            b"definitely not safetensors".to_vec(),
            StatusCode::BAD_REQUEST,
            "safetensors",
        ),
        (
            "truncated",
            Some(&t1),
            good[..good.len() - 9].to_vec(),
            StatusCode::BAD_REQUEST,
            "safetensors",
        ),
        (
            "header length lies",
            Some(&t1),
            u64::MAX.to_le_bytes().to_vec(),
            StatusCode::BAD_REQUEST,
            "safetensors",
        ),
        (
            "extra tensor",
            Some(&t1),
            raw_body(
                vec![
                    a(0.1),
                    b(0.1),
                    ("c", Dtype::F32, vec![1], f32_bytes(&[0.0])),
                ],
                &meta("1"),
            ),
            StatusCode::BAD_REQUEST,
            "unexpected tensor 'c'",
        ),
        (
            "missing tensor",
            Some(&t1),
            raw_body(vec![a(0.1)], &meta("1")),
            StatusCode::BAD_REQUEST,
            "'b' is missing",
        ),
        (
            "renamed tensor",
            Some(&t1),
            raw_body(
                vec![a(0.1), ("B", Dtype::F32, vec![3], f32_bytes(&[0.1; 3]))],
                &meta("1"),
            ),
            StatusCode::BAD_REQUEST,
            "unexpected tensor 'B'",
        ),
        (
            "wrong shape",
            Some(&t1),
            raw_body(
                vec![("a", Dtype::F32, vec![4], f32_bytes(&[0.1; 4])), b(0.1)],
                &meta("1"),
            ),
            StatusCode::BAD_REQUEST,
            "shape",
        ),
        (
            "wrong dtype",
            Some(&t1),
            raw_body(
                vec![a(0.1), ("b", Dtype::F64, vec![3], vec![0u8; 24])],
                &meta("1"),
            ),
            StatusCode::BAD_REQUEST,
            "F64",
        ),
        (
            "NaN",
            Some(&t1),
            tensors::encode_update(&big_layout, &nan, 1, 4, None).unwrap(),
            StatusCode::BAD_REQUEST,
            "NaN",
        ),
        (
            "-Inf",
            Some(&t1),
            tensors::encode_update(&big_layout, &inf, 1, 4, None).unwrap(),
            StatusCode::BAD_REQUEST,
            "infinite",
        ),
        (
            "no metadata",
            Some(&t1),
            raw_body(vec![a(0.1), b(0.1)], &[]),
            StatusCode::BAD_REQUEST,
            "base_version",
        ),
        (
            "base_version not a number",
            Some(&t1),
            raw_body(
                vec![a(0.1), b(0.1)],
                &[("base_version", "one"), ("num_examples", "4")],
            ),
            StatusCode::BAD_REQUEST,
            "base_version",
        ),
        (
            "num_examples missing",
            Some(&t1),
            raw_body(vec![a(0.1), b(0.1)], &[("base_version", "1")]),
            StatusCode::BAD_REQUEST,
            "num_examples",
        ),
        (
            "num_examples 0",
            Some(&t1),
            update_body(&delta(0.1, 0.1), 1, 0),
            StatusCode::BAD_REQUEST,
            "num_examples",
        ),
        (
            "num_examples above the cap",
            Some(&t1),
            update_body(&delta(0.1, 0.1), 1, 1_000_001),
            StatusCode::BAD_REQUEST,
            "num_examples",
        ),
        (
            "client_loss NaN",
            Some(&t1),
            raw_body(
                vec![a(0.1), b(0.1)],
                &[
                    ("base_version", "1"),
                    ("num_examples", "4"),
                    ("client_loss", "NaN"),
                ],
            ),
            StatusCode::BAD_REQUEST,
            "client_loss",
        ),
        (
            "norm above the bound",
            Some(&t1),
            update_body(&delta(3.0, 3.0), 1, 4),
            StatusCode::UNPROCESSABLE_ENTITY,
            "clipping bound",
        ),
        (
            "stale base version",
            Some(&t1),
            update_body(&delta(0.1, 0.1), 0, 4),
            StatusCode::CONFLICT,
            "stale",
        ),
        (
            "future base version",
            Some(&t1),
            update_body(&delta(0.1, 0.1), 2, 4),
            StatusCode::CONFLICT,
            "does not exist",
        ),
        (
            "replayed round-1 body",
            Some(&t3),
            round1_t3.clone(),
            StatusCode::CONFLICT,
            "stale",
        ),
        (
            "second update in a round",
            Some(&t3),
            good.clone(),
            StatusCode::CONFLICT,
            "already submitted",
        ),
        (
            "not selected",
            Some(&t4),
            good.clone(),
            StatusCode::FORBIDDEN,
            "not selected",
        ),
    ];

    let status_before = serde_json::to_value(s.status()).unwrap();
    let files_before = snapshot(&state_dir);
    let global_before = s.global();
    let mut rejected = 0;
    for (name, token, body, want, needle) in cases {
        let (st, b) = call(&app, "POST", "/v1/update", token, body).await;
        assert_eq!(st, want, "{name}: {}", String::from_utf8_lossy(&b));
        let msg = json(&b)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error"))
            .to_string();
        assert!(msg.contains(needle), "{name}: {msg:?} lacks {needle:?}");
        assert_eq!(
            serde_json::to_value(s.status()).unwrap(),
            status_before,
            "{name} changed the status"
        );
        assert_eq!(s.global(), global_before, "{name} changed the model");
        assert!(
            snapshot(&state_dir) == files_before,
            "{name} changed the state directory"
        );
        rejected += 1;
    }
    // Rejections are counted (in memory) by reason; the body limit answers before the server
    // sees the one authenticated oversized body.
    let counters = s.metrics().counters.updates_rejected;
    assert_eq!(counters.values().sum::<u64>(), rejected - 1);
    assert_eq!(counters["unauthorized"], 3);

    // The honest client still gets through afterwards.
    let (st, _) = call(&app, "POST", "/v1/update", Some(&t1), good).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn every_authenticated_route_needs_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Arc::new(Server::open(config(dir.path(), &[])).unwrap()));
    for (method, uri) in [
        ("GET", "/v1/round"),
        ("GET", "/v1/model"),
        ("POST", "/v1/update"),
    ] {
        for token in [None, Some("nope"), Some("")] {
            let (st, b) = call(&app, method, uri, token, vec![]).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert!(json(&b)["error"].as_str().unwrap().contains("token"));
        }
    }
}

#[tokio::test]
async fn a_model_file_with_nan_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = config(dir.path(), &[]);
    let mut v = initial_values();
    v[0][1] = f32::NAN;
    std::fs::write(
        &a.init,
        tensors::serialize(&layout(), &v, &HashMap::new()).unwrap(),
    )
    .unwrap();
    let err = Server::open(a).err().expect("refused");
    assert!(err.to_string().contains("NaN"), "{err}");
}
