//! Bounded load test on loopback: 200 clients submit at once to the real HTTP server.
//! Prints updates per second; asserts correctness only (no timing assertion).

mod common;

use common::*;
use std::sync::{Arc, Barrier};
use std::time::Instant;
use websr_aggregator::{app, Server};

const CLIENTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_submissions_are_all_handled() {
    let dir = tempfile::tempdir().unwrap();
    let n = CLIENTS.to_string();
    let config = config(
        dir.path(),
        &[
            "--min-clients",
            "1",
            "--target-clients",
            &n,
            "--over-selection",
            "1",
            "--round-deadline-secs",
            "3600",
        ],
    );
    let server = Arc::new(Server::open(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
        listener,
        app(server.clone()),
    )));

    let results = tokio::task::spawn_blocking(move || {
        let tokens: Vec<String> = (0..CLIENTS)
            .map(|_| {
                let (_, b) = http(addr, "POST", "/v1/join", None, b"");
                let t = json(&b)["token"].as_str().unwrap().to_string();
                let (_, b) = http(addr, "GET", "/v1/round", Some(&t), b"");
                assert_eq!(json(&b)["selected"], true);
                t
            })
            .collect();
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let start = Instant::now();
        let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        let body = update_body(&delta(i as f32, 1.0), 0, 1);
                        barrier.wait();
                        let (code, b) = http(addr, "POST", "/v1/update", Some(t), &body);
                        (code, json(&b))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "load: {CLIENTS} concurrent submissions in {secs:.3} s = {:.0} updates/s (loopback, fsync per update)",
            CLIENTS as f64 / secs
        );
        results
    })
    .await
    .unwrap();

    for (code, body) in &results {
        assert_eq!(*code, 200, "{body}");
        assert_eq!(body["accepted"], true);
    }
    let closed = results
        .iter()
        .filter(|(_, b)| b["round_closed"] == true)
        .count();
    assert_eq!(
        closed, 1,
        "exactly the last accepted update closes the round"
    );
    let st = server.status();
    assert_eq!((st.global_version, st.accepted), (1, 0));
    let rec = &server.metrics().history[0];
    assert_eq!(rec.clients.len(), CLIENTS);
    // Mean of 0..200 is 99.5 on `a`, 1 on `b`.
    let want: Vec<Vec<f32>> = vec![
        initial_values()[0].iter().map(|x| x + 99.5).collect(),
        initial_values()[1].iter().map(|x| x + 1.0).collect(),
    ];
    assert_close(&server.global(), &want, 1e-4);
}
