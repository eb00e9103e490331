//! Secure-aggregation rounds (`--secure-aggregation`) driven through the HTTP routes in
//! process: SecAgg clients of `websr_federated::secagg` play the participants.

mod common;

use axum::http::StatusCode;
use axum::Router;
use clap::Parser;
use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use websr_aggregator::dp;
use websr_aggregator::protocol::{
    encode_masked_input, ClientId, RoundConfig, SecAggAck, SecAggResult, SecureAggregation,
};
use websr_aggregator::state::now_ms;
use websr_aggregator::{app, Args, Error, Server};
use websr_federated::secagg::{self, KeyDirectory, RoutedShares, UnmaskRequest};

const PHASE_SECS: f64 = 30.0;

fn secagg_server(dir: &Path, extra: &[&str]) -> Arc<Server> {
    let mut flags = vec![
        "--secure-aggregation",
        "--clip-norm",
        "1.0",
        "--min-clients",
        "2",
        "--target-clients",
        "5",
        "--over-selection",
        "1.0",
        "--secagg-threshold",
        "3",
        "--secagg-phase-secs",
        "30",
    ];
    flags.extend_from_slice(extra);
    Arc::new(Server::open(config(dir, &flags)).unwrap())
}

/// `n` deltas of the tiny model, clipped to L2 norm 1 (some well inside it).
fn clipped_deltas(n: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let scale = if i % 2 == 0 { 3.0 } else { 0.1 };
            let mut d: Vec<Vec<f32>> = [4, 3]
                .iter()
                .map(|&len| {
                    (0..len)
                        .map(|_| scale * rng.random_range(-1.0f32..1.0))
                        .collect()
                })
                .collect();
            dp::clip(&mut d, 1.0);
            d
        })
        .collect()
}

fn mean(deltas: &[&Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let n = deltas.len() as f64;
    (0..deltas[0].len())
        .map(|t| {
            (0..deltas[0][t].len())
                .map(|i| (deltas.iter().map(|d| f64::from(d[t][i])).sum::<f64>() / n) as f32)
                .collect()
        })
        .collect()
}

fn plus(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect())
        .collect()
}

/// One participant: its token, id, delta and SecAgg state.
struct Party {
    token: String,
    id: ClientId,
    delta: Vec<Vec<f32>>,
    rng: ChaCha20Rng,
    client: Option<secagg::Client>,
    session: u64,
}

async fn get<T: DeserializeOwned>(app: &Router, uri: &str, token: &str) -> T {
    let (s, b) = call(app, "GET", uri, Some(token), vec![]).await;
    assert_eq!(s, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

async fn post_json<T: serde::Serialize>(
    app: &Router,
    uri: &str,
    token: &str,
    msg: &T,
) -> SecAggAck {
    let (s, b) = call(
        app,
        "POST",
        uri,
        Some(token),
        serde_json::to_vec(msg).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

async fn round_config(app: &Router, token: &str) -> RoundConfig {
    get(app, "/v1/round", token).await
}

fn info(round: &RoundConfig) -> &SecureAggregation {
    round
        .secure_aggregation
        .as_ref()
        .expect("the round announces secure aggregation")
}

/// Joins `deltas.len()` clients, each selected for the round.
async fn join_parties(app: &Router, deltas: &[Vec<Vec<f32>>]) -> Vec<Party> {
    let mut parties = Vec::new();
    for (i, d) in deltas.iter().enumerate() {
        let (s, b) = call(app, "POST", "/v1/join", None, vec![]).await;
        assert_eq!(s, StatusCode::CREATED);
        let joined = json(&b);
        let token = joined["token"].as_str().unwrap().to_string();
        assert!(round_config(app, &token).await.selected);
        parties.push(Party {
            id: joined["client_id"].as_u64().unwrap(),
            token,
            delta: d.clone(),
            rng: ChaCha20Rng::seed_from_u64(100 + i as u64),
            client: None,
            session: 0,
        });
    }
    parties
}

async fn advertise(app: &Router, parties: &mut [Party]) {
    for p in parties.iter_mut() {
        let round = round_config(app, &p.token).await;
        assert!(round.selected);
        let cfg = info(&round).config.clone();
        p.session = cfg.round;
        let (client, adv) = secagg::Client::new(cfg, p.id, &mut p.rng).unwrap();
        p.client = Some(client);
        post_json(app, "/v1/secagg/keys", &p.token, &adv).await;
    }
}

async fn share(app: &Router, parties: &mut [Party]) {
    for p in parties.iter_mut() {
        let dir: KeyDirectory = get(
            app,
            &format!("/v1/secagg/keys?session={}", p.session),
            &p.token,
        )
        .await;
        let msg = p
            .client
            .as_mut()
            .unwrap()
            .share_keys(&dir, &mut p.rng)
            .unwrap();
        post_json(app, "/v1/secagg/shares", &p.token, &msg).await;
    }
}

async fn send_masked(app: &Router, parties: &mut [Party]) -> Vec<SecAggAck> {
    let mut acks = Vec::new();
    for p in parties.iter_mut() {
        let routed: RoutedShares = get(
            app,
            &format!("/v1/secagg/shares?session={}", p.session),
            &p.token,
        )
        .await;
        let client = p.client.as_mut().unwrap();
        let encoded = client.config().encoding.encode_tensors(&p.delta).unwrap();
        let masked = client.masked_input(&routed, &encoded).unwrap();
        let (s, b) = call(
            app,
            "POST",
            "/v1/secagg/masked",
            Some(&p.token),
            encode_masked_input(&masked),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        acks.push(serde_json::from_slice(&b).unwrap());
    }
    acks
}

async fn unmask(app: &Router, parties: &mut [Party]) -> Vec<SecAggAck> {
    let mut acks = Vec::new();
    for p in parties.iter_mut() {
        let req: UnmaskRequest = get(
            app,
            &format!("/v1/secagg/unmask?session={}", p.session),
            &p.token,
        )
        .await;
        let resp = p.client.as_mut().unwrap().unmask(&req).unwrap();
        acks.push(post_json(app, "/v1/secagg/unmask", &p.token, &resp).await);
    }
    acks
}

/// The same deltas through a plain FedAvg server (equal weights): its model.
async fn plain_fedavg(deltas: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let n = deltas.len().to_string();
    let s = Arc::new(
        Server::open(config(
            dir.path(),
            &[
                "--clip-norm",
                "1.0",
                "--min-clients",
                "2",
                "--target-clients",
                &n,
            ],
        ))
        .unwrap(),
    );
    let app = app(s.clone());
    let mut tokens = Vec::new();
    for _ in deltas {
        tokens.push(join_selected(&app).await);
    }
    for (t, d) in tokens.iter().zip(deltas) {
        let (st, b) = submit(&app, t, d, 0, 1).await;
        assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
    assert_eq!(s.status().global_version, 1);
    s.global()
}

#[tokio::test]
async fn a_secure_round_reaches_the_plain_fedavg_model() {
    let dir = tempfile::tempdir().unwrap();
    let s = secagg_server(dir.path(), &[]);
    let app = app(s.clone());
    let deltas = clipped_deltas(5, 1);
    let mut parties = join_parties(&app, &deltas).await;

    // The round config announces the session; a plain update is refused.
    let round = round_config(&app, &parties[0].token).await;
    let sa = info(&round).clone();
    assert_eq!(sa.phase, "keys");
    assert_eq!(sa.config.threshold, 3);
    assert_eq!(sa.config.vector_len, 7);
    assert_eq!(sa.clip_norm, 1.0);
    let (st, b) = submit(&app, &parties[0].token, &deltas[0], 0, 1).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(json(&b)["error"].as_str().unwrap().contains("/v1/secagg"));

    advertise(&app, &mut parties).await;
    // Every selected client advertised (target 5): the keys phase closed, selection too.
    let round = round_config(&app, &parties[0].token).await;
    assert_eq!(info(&round).phase, "shares");
    assert!(round.submitted);
    let (_, b) = call(&app, "POST", "/v1/join", None, vec![]).await;
    let late = json(&b)["token"].as_str().unwrap().to_string();
    assert!(!round_config(&app, &late).await.selected);

    // Before the shares phase closes its broadcast is not there yet (425).
    let (st, _) = call(
        &app,
        "GET",
        &format!("/v1/secagg/shares?session={}", sa.config.round),
        Some(&parties[0].token),
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::TOO_EARLY);

    share(&app, &mut parties).await;
    send_masked(&app, &mut parties).await;
    let acks = unmask(&app, &mut parties).await;
    assert_eq!(acks.last().unwrap().phase, "done");
    assert_eq!(acks.last().unwrap().global_version, 1);

    let result: SecAggResult = get(
        &app,
        &format!("/v1/secagg/result?session={}", sa.config.round),
        &parties[0].token,
    )
    .await;
    assert_eq!(result.global_version, 1);
    let mut ids: Vec<ClientId> = parties.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    assert_eq!(result.survivors, ids);

    // The same model as plain FedAvg over the same clipped deltas (equal weights), within the
    // fixed-point step (~3e-9 here) plus f32 rounding.
    let plain = plain_fedavg(&deltas).await;
    assert_close(&s.global(), &plain, 2e-7);
    let want = plus(&initial_values(), &mean(&deltas.iter().collect::<Vec<_>>()));
    assert_close(&s.global(), &want, 2e-7);

    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    let m = json(&b);
    assert_eq!(m["history"][0]["closed_by"], "secure-aggregation");
    assert_eq!(m["history"][0]["clients"].as_array().unwrap().len(), 5);
    assert_eq!(m["history"][0]["noise_std"], 0.0);

    // The server kept no individual update: no update log, and no file holds any client's
    // delta (as f32 bytes, or its fixed-point encoding).
    assert_no_individual_update(dir.path(), &deltas, &sa);

    // The next round is a new session on version 1.
    let round = round_config(&app, &parties[0].token).await;
    assert_eq!(round.global_version, 1);
    assert_ne!(info(&round).config.round, sa.config.round);
    assert_eq!(info(&round).phase, "keys");
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_no_individual_update(dir: &Path, deltas: &[Vec<Vec<f32>>], sa: &SecureAggregation) {
    let state = dir.join("state");
    let all = files(&state);
    assert!(!all.is_empty());
    for f in &all {
        let rel = f.strip_prefix(&state).unwrap();
        assert!(
            !rel.starts_with("updates") && !rel.starts_with("quarantine"),
            "{} in the state directory",
            rel.display()
        );
        let bytes = std::fs::read(f).unwrap();
        for d in deltas {
            let raw: Vec<u8> = d[0].iter().flat_map(|x| x.to_le_bytes()).collect();
            let enc: Vec<u8> = sa
                .config
                .encoding
                .encode(&d[0])
                .unwrap()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            for needle in [&raw, &enc] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{} holds a client's delta",
                    rel.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn dropouts_after_sharing_still_give_the_survivors_mean() {
    let dir = tempfile::tempdir().unwrap();
    let s = secagg_server(dir.path(), &[]);
    let app = app(s.clone());
    let deltas = clipped_deltas(5, 2);
    let mut parties = join_parties(&app, &deltas).await;
    advertise(&app, &mut parties).await;
    share(&app, &mut parties).await;
    // Two clients vanish before their masked input: the phase waits for its deadline.
    let (stay, _gone) = parties.split_at_mut(3);
    let acks = send_masked(&app, stay).await;
    assert_eq!(acks.last().unwrap().phase, "masked");
    assert!(!s.tick_at(now_ms() + 1000).unwrap());
    assert!(!s
        .tick_at(now_ms() + (PHASE_SECS * 1000.0) as u64 + 1000)
        .unwrap());
    let round = round_config(&app, &stay[0].token).await;
    assert_eq!(info(&round).phase, "unmask");

    let req: UnmaskRequest = get(
        &app,
        &format!("/v1/secagg/unmask?session={}", stay[0].session),
        &stay[0].token,
    )
    .await;
    assert_eq!(req.survivors.len(), 3);
    assert_eq!(req.dropped.len(), 2);
    let acks = unmask(&app, stay).await;
    assert_eq!(acks.last().unwrap().phase, "done");

    let want = plus(
        &initial_values(),
        &mean(&deltas[..3].iter().collect::<Vec<_>>()),
    );
    assert_close(&s.global(), &want, 2e-7);
    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    let m = json(&b);
    assert_eq!(m["history"][0]["clients"].as_array().unwrap().len(), 3);
    assert_eq!(m["history"][0]["stragglers_dropped"], 2);
}

#[tokio::test]
async fn below_the_threshold_the_session_fails_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let s = secagg_server(dir.path(), &[]);
    let app = app(s.clone());
    let deltas = clipped_deltas(5, 3);
    let mut parties = join_parties(&app, &deltas).await;
    advertise(&app, &mut parties).await;
    share(&app, &mut parties).await;
    let first = parties[0].session;
    // Only 2 masked inputs (threshold 3): at the deadline the session fails, no sum.
    send_masked(&app, &mut parties[..2]).await;
    s.tick_at(now_ms() + (PHASE_SECS * 1000.0) as u64 + 1000)
        .unwrap();
    assert_eq!(s.status().global_version, 0);
    assert_eq!(s.global(), initial_values());
    for uri in ["unmask", "result", "keys"] {
        let (st, b) = call(
            &app,
            "GET",
            &format!("/v1/secagg/{uri}?session={first}"),
            Some(&parties[0].token),
            vec![],
        )
        .await;
        assert_eq!(st, StatusCode::GONE);
        let m = json(&b)["error"].as_str().unwrap().to_string();
        assert!(m.contains("failed") && m.contains("masked"), "{m}");
    }
    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    assert_eq!(json(&b)["counters"]["secagg_sessions_failed"], 1);

    // The round starts over in a new session: the same clients select themselves again.
    for p in &mut parties {
        let round = round_config(&app, &p.token).await;
        assert!(round.selected && !round.submitted);
        assert_eq!(round.global_version, 0);
        assert_ne!(info(&round).config.round, first);
    }
    advertise(&app, &mut parties).await;
    share(&app, &mut parties).await;
    send_masked(&app, &mut parties).await;
    unmask(&app, &mut parties).await;
    assert_eq!(s.status().global_version, 1);
    let want = plus(&initial_values(), &mean(&deltas.iter().collect::<Vec<_>>()));
    assert_close(&s.global(), &want, 2e-7);
}

#[tokio::test]
async fn a_restart_abandons_the_open_session_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let deltas = clipped_deltas(5, 4);
    let (ids, first) = {
        let s = secagg_server(dir.path(), &[]);
        let app = app(s.clone());
        let mut parties = join_parties(&app, &deltas).await;
        advertise(&app, &mut parties).await;
        share(&app, &mut parties).await;
        let ids: Vec<(ClientId, String)> =
            parties.iter().map(|p| (p.id, p.token.clone())).collect();
        (ids, parties[0].session)
    };
    let s = secagg_server(dir.path(), &[]);
    let app = app(s.clone());
    let (st, b) = call(
        &app,
        "GET",
        &format!("/v1/secagg/shares?session={first}"),
        Some(&ids[0].1),
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::GONE);
    assert!(json(&b)["error"].as_str().unwrap().contains("restart"));
    let mut parties = Vec::new();
    for (i, (id, t)) in ids.iter().enumerate() {
        parties.push(Party {
            id: *id,
            token: t.clone(),
            delta: deltas[i].clone(),
            rng: ChaCha20Rng::seed_from_u64(7 + i as u64),
            client: None,
            session: 0,
        });
    }
    advertise(&app, &mut parties).await;
    assert_ne!(parties[0].session, first);
    share(&app, &mut parties).await;
    send_masked(&app, &mut parties).await;
    unmask(&app, &mut parties).await;
    assert_eq!(s.status().global_version, 1);
}

#[tokio::test]
async fn distributed_noise_is_accounted_like_server_noise() {
    let dir = tempfile::tempdir().unwrap();
    let s = secagg_server(dir.path(), &["--noise-multiplier", "1.0"]);
    let app = app(s.clone());
    let deltas = clipped_deltas(5, 5);
    let mut parties = join_parties(&app, &deltas).await;
    advertise(&app, &mut parties).await;
    let noise = info(&round_config(&app, &parties[0].token).await)
        .noise()
        .unwrap()
        .expect("noise is on");
    // Each client adds its share before encoding.
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    for p in &mut parties {
        noise.add(&mut p.delta, &mut rng);
    }
    share(&app, &mut parties).await;
    send_masked(&app, &mut parties).await;
    unmask(&app, &mut parties).await;
    let noised: Vec<&Vec<Vec<f32>>> = parties.iter().map(|p| &p.delta).collect();
    assert_close(&s.global(), &plus(&initial_values(), &mean(&noised)), 2e-6);
    let (_, b) = call(&app, "GET", "/v1/metrics", None, vec![]).await;
    let m = json(&b);
    let rec = &m["history"][0];
    // 5 survivors, threshold 3: std on the mean 2 z C sqrt(5 / 3) / 5.
    let want = 2.0 * (5.0f64 / 3.0).sqrt() / 5.0;
    assert!((rec["noise_std"].as_f64().unwrap() - want).abs() < 1e-12);
    assert!(rec["epsilon_round"].as_f64().is_some());
    assert!(rec["delta_norm"].is_null());
    assert_eq!(m["dp"]["rounds"], 1);
}

#[test]
fn contradicting_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &[&str], needle: &str| {
        let mut flags = vec!["--secure-aggregation"];
        flags.extend_from_slice(extra);
        let err = match Server::open(config(dir.path(), &flags)) {
            Err(Error::Config(m)) => m,
            Err(e) => panic!("{extra:?}: not a config error: {e}"),
            Ok(_) => panic!("{extra:?} accepted"),
        };
        assert!(err.contains(needle), "{extra:?}: {err}");
    };
    // `config` turns clipping off unless --clip-norm is given.
    refused(&[], "--no-clip");
    for strategy in ["median", "trimmed-mean", "krum"] {
        refused(
            &[
                "--clip-norm",
                "1",
                "--strategy",
                strategy,
                "--min-clients",
                "5",
            ],
            strategy,
        );
    }
    refused(
        &[
            "--clip-norm",
            "1",
            "--target-clients",
            "4",
            "--secagg-threshold",
            "5",
        ],
        "--secagg-threshold",
    );
    refused(
        &["--clip-norm", "1", "--secagg-threshold", "1"],
        "at least 2",
    );
    refused(
        &[
            "--clip-norm",
            "1",
            "--secagg-threshold",
            "6",
            "--secagg-neighbours",
            "2",
        ],
        "holders",
    );
    // The SecAgg flags mean nothing without --secure-aggregation.
    assert!(Args::try_parse_from(["websr-aggregator", "--secagg-threshold", "3"]).is_err());
    // Accepted: fedadam with clipping, the default threshold ceil(2/3 * 10) = 7.
    let cfg = config(
        dir.path(),
        &[
            "--secure-aggregation",
            "--clip-norm",
            "1",
            "--strategy",
            "fedadam",
        ],
    );
    assert_eq!(cfg.secagg_threshold(), Some(7));
    assert!(Server::open(cfg).is_ok());
}
