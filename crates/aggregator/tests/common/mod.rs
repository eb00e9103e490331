//! Shared test helpers: a tiny model, flags, in-process requests and a raw loopback client.
#![allow(dead_code)] // each test binary uses a different subset

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use clap::Parser;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use tower::ServiceExt;
use websr_aggregator::tensors::{self, Layout};
use websr_aggregator::{Args, ServerConfig};

/// The tiny model: `a` [2, 2] and `b` [3].
pub fn layout() -> Layout {
    Layout {
        names: vec!["a".into(), "b".into()],
        shapes: vec![vec![2, 2], vec![3]],
    }
}

pub fn initial_values() -> Vec<Vec<f32>> {
    vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -0.5, 0.0]]
}

/// Writes the tiny model (with websr-style metadata) to `dir/init.safetensors`.
pub fn write_model(dir: &Path) -> std::path::PathBuf {
    let mut md = HashMap::new();
    md.insert("format".to_string(), "websr-weights".to_string());
    md.insert("format_version".to_string(), "1".to_string());
    md.insert("spec".to_string(), r#"{"arch":"tiny"}"#.to_string());
    let bytes = tensors::serialize(&layout(), &initial_values(), &md).unwrap();
    let path = dir.join("init.safetensors");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The config of a server on the tiny model in `dir` (`dir/state`), from the flags `extra`
/// parsed as the binary parses them. Without `--clip-norm` in `extra` clipping is off
/// (`--no-clip`); the pseudo-flag `--default-clip` keeps the binary's default instead.
pub fn config(dir: &Path, extra: &[&str]) -> ServerConfig {
    let init = write_model(dir);
    config_for(&init, &dir.join("state"), extra)
}

/// [`config`] for the model file `init`, with its state in `state`.
pub fn config_for(init: &Path, state: &Path, extra: &[&str]) -> ServerConfig {
    let mut argv = vec![
        "websr-aggregator".to_string(),
        "--init".into(),
        init.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--seed".into(),
        "7".into(),
    ];
    // The tiny model's hand-made deltas are larger than the default clipping bound (1.0):
    // tests that are not about clipping turn it off; those that are set it.
    if !extra
        .iter()
        .any(|a| *a == "--clip-norm" || *a == "--default-clip")
    {
        argv.push("--no-clip".into());
    }
    argv.extend(
        extra
            .iter()
            .filter(|a| **a != "--default-clip")
            .map(|s| s.to_string()),
    );
    Args::try_parse_from(argv).unwrap().server_config()
}

/// A delta with every value of tensor `a` = `x` and of `b` = `y`.
pub fn delta(x: f32, y: f32) -> Vec<Vec<f32>> {
    vec![vec![x; 4], vec![y; 3]]
}

pub fn update_body(d: &[Vec<f32>], base_version: u64, num_examples: u64) -> Vec<u8> {
    tensors::encode_update(&layout(), d, base_version, num_examples, Some(0.25)).unwrap()
}

/// One in-process request through `oneshot`: (status, body bytes).
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, bytes.to_vec())
}

/// `POST /v1/update` with the body of `update_body(d, base_version, num_examples)`.
pub async fn submit(
    app: &Router,
    token: &str,
    d: &[Vec<f32>],
    base_version: u64,
    num_examples: u64,
) -> (StatusCode, Vec<u8>) {
    let body = update_body(d, base_version, num_examples);
    call(app, "POST", "/v1/update", Some(token), body).await
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Joins and asks for the round: returns the token (asserting the client was selected).
pub async fn join_selected(app: &Router) -> String {
    let (s, b) = call(app, "POST", "/v1/join", None, vec![]).await;
    assert_eq!(s, StatusCode::CREATED);
    let token = json(&b)["token"].as_str().unwrap().to_string();
    let (s, b) = call(app, "GET", "/v1/round", Some(&token), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["selected"], true);
    token
}

/// A blocking HTTP/1.1 request over loopback (`Connection: close`): (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    // The head and the body go in two writes: without this, Nagle holds the body back.
    s.set_nodelay(true).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper does not decode chunked bodies"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (status, raw[split + 4..].to_vec())
}

pub fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }
}
