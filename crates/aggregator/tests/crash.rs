//! Crash test: the real binary is killed with SIGKILL mid-round and restarted on the same state
//! directory; nothing it had accepted is lost and the round completes.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use websr_aggregator::tensors;

/// Starts the binary (a 4-client round, an hour's deadline) and waits for "listening on".
fn spawn(dir: &Path) -> (Child, SocketAddr) {
    let flags = ["--min-clients", "4", "--target-clients", "4"];
    spawn_with(
        dir,
        &[&flags[..], &["--round-deadline-secs", "3600"]].concat(),
    )
}

fn spawn_with(dir: &Path, flags: &[&str]) -> (Child, SocketAddr) {
    let init = write_model(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_websr-aggregator"))
        // The tiny model's test deltas are larger than the default clipping bound.
        .args(["--bind", "127.0.0.1:0", "--no-clip"])
        .args(flags)
        .arg("--init")
        .arg(&init)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn json_of(r: (u16, Vec<u8>)) -> serde_json::Value {
    assert!(r.0 < 300, "HTTP {}: {}", r.0, String::from_utf8_lossy(&r.1));
    json(&r.1)
}

#[test]
fn sigkill_mid_round_loses_nothing_and_the_round_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(dir.path());
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let j = json_of(http(addr, "POST", "/v1/join", None, b""));
        let t = j["token"].as_str().unwrap().to_string();
        assert_eq!(
            json_of(http(addr, "GET", "/v1/round", Some(&t), b""))["selected"],
            true
        );
        tokens.push(t);
    }
    for (i, t) in tokens[..3].iter().enumerate() {
        let r = json_of(http(
            addr,
            "POST",
            "/v1/update",
            Some(t),
            &update_body(&delta(i as f32, 1.0), 0, 1),
        ));
        assert_eq!(r["accepted"], true);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut child, addr) = spawn(dir.path());
    let st = json_of(http(addr, "GET", "/v1/status", None, b""));
    assert_eq!(
        (st["global_version"].as_u64(), st["accepted"].as_u64()),
        (Some(0), Some(3))
    );
    // The accepted updates are still there: resending one is a duplicate.
    let (code, _) = http(
        addr,
        "POST",
        "/v1/update",
        Some(&tokens[0]),
        &update_body(&delta(0.0, 1.0), 0, 1),
    );
    assert_eq!(code, 409);
    // The fourth client's selection and token survived too; its update completes the round.
    let r = json_of(http(
        addr,
        "POST",
        "/v1/update",
        Some(&tokens[3]),
        &update_body(&delta(3.0, 1.0), 0, 1),
    ));
    assert_eq!(r["round_closed"], true);
    assert_eq!(r["global_version"], 1);
    let (code, body) = http(addr, "GET", "/v1/model", Some(&tokens[0]), b"");
    assert_eq!(code, 200);
    // Mean delta: a += (0 + 1 + 2 + 3) / 4 = 1.5, b += 1.
    let want = vec![vec![2.5, 3.5, 4.5, 5.5], vec![1.5, 0.5, 1.0]];
    assert_close(&tensors::read_model(&body).unwrap().values, &want, 1e-6);
    child.kill().unwrap();
    child.wait().unwrap();

    // The committed model survives the next crash as well.
    let (mut child, addr) = spawn(dir.path());
    let st = json_of(http(addr, "GET", "/v1/status", None, b""));
    assert_eq!(st["global_version"], 1);
    assert_eq!(st["model_sha256"], tensors::sha256_hex(&body));
    let m = json_of(http(addr, "GET", "/v1/metrics", None, b""));
    assert_eq!(m["history"][0]["clients"], serde_json::json!([1, 2, 3, 4]));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_binary_closes_a_round_at_its_deadline_without_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--min-clients",
        "1",
        "--target-clients",
        "5",
        "--round-deadline-secs",
        "0.4",
    ];
    let (mut child, addr) = spawn_with(dir.path(), &flags);
    let t = json_of(http(addr, "POST", "/v1/join", None, b""))["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        json_of(http(addr, "GET", "/v1/round", Some(&t), b""))["selected"],
        true
    );
    let body = update_body(&delta(1.0, 0.0), 0, 1);
    json_of(http(addr, "POST", "/v1/update", Some(&t), &body));
    // The background ticker closes the round once the deadline passes (bounded wait).
    let start = std::time::Instant::now();
    let version = loop {
        let st = json_of(http(addr, "GET", "/v1/status", None, b""));
        if st["global_version"] == 1 || start.elapsed().as_secs() > 20 {
            break st["global_version"].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(version, 1);
    let m = json_of(http(addr, "GET", "/v1/metrics", None, b""));
    assert_eq!(m["history"][0]["closed_by"], "deadline");
    child.kill().unwrap();
    child.wait().unwrap();
}
