//! Secure aggregation end to end: whole rounds between `secagg::Client`s and a `secagg::Server`,
//! every message passed through JSON as the aggregator will carry it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use websr_federated::dp;
use websr_federated::protocol::ClientId;
use websr_federated::secagg::{
    Aggregate, Client, DistributedNoise, FixedPoint, MaskedInput, SecAggConfig, SecAggError,
    Server, ShareKeys, UnmaskRequest,
};

/// Through JSON and back, as over HTTP.
fn wire<T: Serialize + DeserializeOwned>(m: &T) -> T {
    serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap()
}

fn config(
    round: u64,
    t: usize,
    k: Option<usize>,
    dim: usize,
    encoding: FixedPoint,
) -> SecAggConfig {
    SecAggConfig {
        round,
        threshold: t,
        neighbours: k,
        vector_len: dim,
        encoding,
    }
}

/// Who vanishes before which step.
#[derive(Default, Clone)]
struct Drops {
    before_shares: BTreeSet<ClientId>,
    before_masked: BTreeSet<ClientId>,
    before_unmask: BTreeSet<ClientId>,
}

/// What the server saw, besides the result.
#[derive(Default)]
struct Seen {
    shares: BTreeMap<ClientId, ShareKeys>,
    masked: BTreeMap<ClientId, MaskedInput>,
    request: Option<UnmaskRequest>,
}

fn client_rng(seed: u64, id: ClientId) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id))
}

/// One whole round. Client-side errors panic (honest clients in these tests never err); the
/// server's errors are the result.
fn run(
    cfg: &SecAggConfig,
    inputs: &BTreeMap<ClientId, Vec<u32>>,
    drops: &Drops,
    seed: u64,
    seen: &mut Seen,
) -> Result<Aggregate, SecAggError> {
    let mut server = Server::new(cfg.clone())?;
    let mut clients = BTreeMap::new();
    let mut rngs = BTreeMap::new();
    for &id in inputs.keys() {
        let mut rng = client_rng(seed, id);
        let (client, adv) = Client::new(cfg.clone(), id, &mut rng).unwrap();
        server.receive_keys(wire(&adv))?;
        clients.insert(id, client);
        rngs.insert(id, rng);
    }
    let directory = wire(&server.close_keys()?);
    for (&id, client) in &mut clients {
        if drops.before_shares.contains(&id) {
            continue;
        }
        let msg = client
            .share_keys(&directory, rngs.get_mut(&id).unwrap())
            .unwrap();
        seen.shares.insert(id, msg.clone());
        server.receive_shares(wire(&msg))?;
    }
    for routed in server.close_shares()? {
        let id = routed.client;
        if drops.before_masked.contains(&id) {
            continue;
        }
        let msg = clients
            .get_mut(&id)
            .unwrap()
            .masked_input(&wire(&routed), &inputs[&id])
            .unwrap();
        seen.masked.insert(id, msg.clone());
        server.receive_masked(wire(&msg))?;
    }
    let request = wire(&server.close_masked()?);
    seen.request = Some(request.clone());
    for &id in &request.survivors {
        if drops.before_unmask.contains(&id) {
            continue;
        }
        let resp = clients.get_mut(&id).unwrap().unmask(&request).unwrap();
        server.receive_unmask(wire(&resp))?;
    }
    let aggregate = server.finish()?;
    Ok(wire(&aggregate))
}

/// `n` random deltas of `dim` coordinates, clipped to L2 norm `clip` (some well inside it).
fn clipped_deltas(n: usize, dim: usize, clip: f64, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let scale = if i % 3 == 0 { 0.01 } else { 1.0 };
            let mut d = vec![(0..dim)
                .map(|_| scale * rng.random_range(-1.0f32..1.0))
                .collect::<Vec<f32>>()];
            dp::clip(&mut d, clip);
            d.pop().unwrap()
        })
        .collect()
}

fn ring_sum<'a>(vectors: impl IntoIterator<Item = &'a Vec<u32>>, dim: usize) -> Vec<u32> {
    let mut sum = vec![0u32; dim];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v) {
            *s = s.wrapping_add(*x);
        }
    }
    sum
}

fn ids(n: u64) -> Vec<ClientId> {
    // Not contiguous, not starting at 0: ids are the aggregator's join order.
    (0..n).map(|i| 3 + 7 * i).collect()
}

/// Encoded clipped inputs of `ids`, and the float deltas they came from.
fn encoded_inputs(
    ids: &[ClientId],
    dim: usize,
    f: &FixedPoint,
    clip: f64,
    seed: u64,
) -> (BTreeMap<ClientId, Vec<u32>>, BTreeMap<ClientId, Vec<f32>>) {
    let deltas = clipped_deltas(ids.len(), dim, clip, seed);
    let enc = ids
        .iter()
        .zip(&deltas)
        .map(|(&id, d)| (id, f.encode(d).unwrap()))
        .collect();
    let raw = ids.iter().copied().zip(deltas).collect();
    (enc, raw)
}

fn assert_exact(
    result: Result<Aggregate, SecAggError>,
    inputs: &BTreeMap<ClientId, Vec<u32>>,
    survivors: &BTreeSet<ClientId>,
    dim: usize,
) -> Aggregate {
    let agg = result.unwrap();
    assert_eq!(agg.survivors, survivors.iter().copied().collect::<Vec<_>>());
    let expected = ring_sum(survivors.iter().map(|id| &inputs[id]), dim);
    assert_eq!(
        agg.sum, expected,
        "the unmasked sum is not the sum of the inputs"
    );
    agg
}

#[test]
fn sum_of_ten_clients_is_exact() {
    let (n, dim, clip) = (10, 2000, 1.0);
    let f = FixedPoint::for_clip_norm(clip, 16).unwrap();
    let ids = ids(n);
    let (inputs, raw) = encoded_inputs(&ids, dim, &f, clip, 1);
    for k in [None, Some(4)] {
        let cfg = config(5, if k.is_none() { 6 } else { 3 }, k, dim, f);
        let mut seen = Seen::default();
        let all: BTreeSet<_> = ids.iter().copied().collect();
        let agg = assert_exact(
            run(&cfg, &inputs, &Drops::default(), 7, &mut seen),
            &inputs,
            &all,
            dim,
        );
        // Every masked input differs from its plaintext in (nearly) every coordinate.
        for (id, m) in &seen.masked {
            let same = m
                .values
                .iter()
                .zip(&inputs[id])
                .filter(|(a, b)| a == b)
                .count();
            assert!(same < 3, "client {id}: {same} coordinates unmasked");
        }
        // Decoded: within the fixed-point step of the float sum (n half-steps of rounding).
        let decoded = agg.decode(&f).unwrap();
        let tol = n as f64 * f.step() / 2.0 + 1e-12;
        for (i, d) in decoded.iter().enumerate() {
            let float_sum: f64 = raw.values().map(|v| f64::from(v[i])).sum();
            assert!(
                (d - float_sum).abs() <= tol,
                "coordinate {i}: {d} vs {float_sum}"
            );
        }
    }
}

/// Pearson's chi-square of byte counts against the uniform distribution.
fn chi2_bytes(bytes: impl Iterator<Item = u8>) -> f64 {
    let mut counts = [0u64; 256];
    let mut total = 0u64;
    for b in bytes {
        counts[b as usize] += 1;
        total += 1;
    }
    let e = total as f64 / 256.0;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Upper 1e-4 quantile of chi-square with 255 degrees of freedom is about 346.
const CHI2_255_LIMIT: f64 = 350.0;

#[test]
fn one_masked_update_looks_uniform() {
    let (dim, clip) = (100_000, 1.0);
    let f = FixedPoint::for_clip_norm(clip, 8).unwrap();
    let ids = ids(3);
    let zeros: BTreeMap<ClientId, Vec<u32>> = ids
        .iter()
        .map(|&id| (id, f.encode(&vec![0.0; dim]).unwrap()))
        .collect();
    let masked_of = |round: u64, seed: u64| {
        let mut seen = Seen::default();
        let cfg = config(round, 2, None, dim, f);
        let agg = run(&cfg, &zeros, &Drops::default(), seed, &mut seen).unwrap();
        assert!(agg.sum.iter().all(|&s| s == 0));
        seen.masked.remove(&ids[0]).unwrap().values
    };
    let m = masked_of(1, 1);
    let top = chi2_bytes(m.iter().map(|v| (v >> 24) as u8));
    let all = chi2_bytes(m.iter().flat_map(|v| v.to_le_bytes()));
    assert!(top < CHI2_255_LIMIT, "top byte chi2 {top}");
    assert!(all < CHI2_255_LIMIT, "all bytes chi2 {all}");
    // The same statistic does see through a plaintext: a clipped delta's encoding is far from
    // uniform (most coordinates are small, so their top byte is 0x00 or 0xff).
    let (plain, _) = encoded_inputs(&ids[..1], dim, &f, clip, 3);
    let plain_top = chi2_bytes(plain[&ids[0]].iter().map(|v| (v >> 24) as u8));
    assert!(
        plain_top > 100.0 * CHI2_255_LIMIT,
        "plaintext chi2 {plain_top}"
    );

    // Two rounds with the same input (even the same client seeds) mask differently, and so do
    // two runs of one round with fresh randomness.
    for other in [masked_of(2, 1), masked_of(1, 2)] {
        let same = m.iter().zip(&other).filter(|(a, b)| a == b).count();
        assert!(same < 3, "{same} equal coordinates");
    }
}

#[test]
fn dropouts_after_sharing_up_to_n_minus_t_are_recovered() {
    let (n, t, dim, clip) = (10usize, 6usize, 300, 1.0);
    let f = FixedPoint::for_clip_norm(clip, n).unwrap();
    let ids = ids(n as u64);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, clip, 4);
    let cfg = config(9, t, None, dim, f);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    for dropped in 0..=n - t {
        let mut pool = ids.clone();
        let mut drops = Drops::default();
        for _ in 0..dropped {
            let i = rng.random_range(0..pool.len());
            drops.before_masked.insert(pool.remove(i));
        }
        let survivors: BTreeSet<_> = pool.into_iter().collect();
        let mut seen = Seen::default();
        assert_exact(
            run(&cfg, &inputs, &drops, 11, &mut seen),
            &inputs,
            &survivors,
            dim,
        );
        let req = seen.request.unwrap();
        assert_eq!(req.dropped.len(), dropped);
    }
    // One more and the round stops at the masked-input step.
    let drops = Drops {
        before_masked: ids[..n - t + 1].iter().copied().collect(),
        ..Drops::default()
    };
    let err = run(&cfg, &inputs, &drops, 11, &mut Seen::default()).unwrap_err();
    assert_eq!(
        err,
        SecAggError::TooFewClients {
            round: 9,
            step: "masked input",
            got: t - 1,
            threshold: t
        }
    );
}

#[test]
fn dropouts_at_every_step_with_a_sparse_graph() {
    // 12 clients, 6 neighbours each (7 holders per secret), threshold 3: drops spread around the
    // ring leave each secret with at least 3 holders.
    let (n, dim, clip) = (12u64, 500, 0.5);
    let f = FixedPoint::for_clip_norm(clip, 12).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, clip, 5);
    let cfg = config(2, 3, Some(6), dim, f);
    let drops = Drops {
        before_shares: [ids[0]].into(),
        before_masked: [ids[4], ids[8]].into(),
        before_unmask: [ids[2], ids[10]].into(),
    };
    let survivors: BTreeSet<_> = ids
        .iter()
        .copied()
        .filter(|id| !drops.before_shares.contains(id) && !drops.before_masked.contains(id))
        .collect();
    let mut seen = Seen::default();
    assert_exact(
        run(&cfg, &inputs, &drops, 3, &mut seen),
        &inputs,
        &survivors,
        dim,
    );
    // Nobody sent a share to the client that left before sharing, and it sent none.
    assert!(!seen.shares.contains_key(&ids[0]));
    // Each client sent shares to its 6 neighbours only.
    assert!(seen.shares.values().all(|s| s.shares.len() == 6));
}

#[test]
fn too_few_clients_at_any_step_fail_the_round_cleanly() {
    let (n, t, dim) = (6u64, 4usize, 50);
    let f = FixedPoint::for_clip_norm(1.0, 8).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, 1.0, 6);
    let cfg = config(4, t, None, dim, f);
    let too_few = |step, got| SecAggError::TooFewClients {
        round: 4,
        step,
        got,
        threshold: t,
    };

    // Step 0: only t - 1 clients advertise keys.
    let few: BTreeMap<_, _> = inputs
        .iter()
        .take(t - 1)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let err = run(&cfg, &few, &Drops::default(), 1, &mut Seen::default()).unwrap_err();
    assert_eq!(err, too_few("advertise keys", t - 1));

    // Steps 1, 2 and 3: n - t + 1 clients vanish before each.
    let gone: BTreeSet<_> = ids[..(n as usize) - t + 1].iter().copied().collect();
    for (drops, step) in [
        (
            Drops {
                before_shares: gone.clone(),
                ..Drops::default()
            },
            "share keys",
        ),
        (
            Drops {
                before_masked: gone.clone(),
                ..Drops::default()
            },
            "masked input",
        ),
        (
            Drops {
                before_unmask: gone.clone(),
                ..Drops::default()
            },
            "unmasking",
        ),
    ] {
        let err = run(&cfg, &inputs, &drops, 1, &mut Seen::default()).unwrap_err();
        assert_eq!(err, too_few(step, t - 1));
    }

    // After a failure the server answers nothing but the reason, and never a sum.
    let mut server = Server::new(cfg.clone()).unwrap();
    assert!(server.close_keys().is_err());
    assert!(
        matches!(server.close_keys(), Err(SecAggError::Aborted(r)) if r.contains("advertise keys"))
    );
    assert!(matches!(server.finish(), Err(SecAggError::Aborted(_))));
}

#[test]
fn a_secret_with_fewer_than_t_surviving_holders_fails_the_round() {
    // k = 2: each secret has 3 holders (the owner and its two ring neighbours). Two adjacent
    // clients drop before their masked input: the first of them keeps one surviving holder.
    let (n, dim) = (8u64, 40);
    let f = FixedPoint::for_clip_norm(1.0, 8).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, 1.0, 7);
    let cfg = config(1, 2, Some(2), dim, f);
    let drops = Drops {
        before_masked: [ids[3], ids[4]].into(),
        ..Drops::default()
    };
    let err = run(&cfg, &inputs, &drops, 1, &mut Seen::default()).unwrap_err();
    assert_eq!(
        err,
        SecAggError::NotEnoughShares {
            round: 1,
            owner: ids[3],
            secret: "mask key",
            got: 1,
            threshold: 2
        }
    );
}

/// Runs a round up to the unmasking request; returns the clients and the server there.
fn up_to_unmask(
    cfg: &SecAggConfig,
    inputs: &BTreeMap<ClientId, Vec<u32>>,
    drop_before_masked: &[ClientId],
) -> (BTreeMap<ClientId, Client>, Server, UnmaskRequest) {
    let mut server = Server::new(cfg.clone()).unwrap();
    let mut clients = BTreeMap::new();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    for &id in inputs.keys() {
        let (c, adv) = Client::new(cfg.clone(), id, &mut rng).unwrap();
        server.receive_keys(adv).unwrap();
        clients.insert(id, c);
    }
    let dir = server.close_keys().unwrap();
    for c in clients.values_mut() {
        server
            .receive_shares(c.share_keys(&dir, &mut rng).unwrap())
            .unwrap();
    }
    for r in server.close_shares().unwrap() {
        if !drop_before_masked.contains(&r.client) {
            let c = clients.get_mut(&r.client).unwrap();
            server
                .receive_masked(c.masked_input(&r, &inputs[&r.client]).unwrap())
                .unwrap();
        }
    }
    let req = server.close_masked().unwrap();
    (clients, server, req)
}

#[test]
fn honest_clients_never_reveal_both_shares_of_one_neighbour() {
    let (n, dim) = (5u64, 20);
    let f = FixedPoint::for_clip_norm(1.0, 8).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, 1.0, 8);
    let cfg = config(3, 3, None, dim, f);
    let victim = ids[1];

    // A server that lists a survivor as dropped too, to get its key share with its seed share.
    let (mut clients, _, req) = up_to_unmask(&cfg, &inputs, &[]);
    let mut greedy = req.clone();
    greedy.dropped.push(victim);
    for (&id, c) in &mut clients {
        assert_eq!(
            c.unmask(&greedy).unwrap_err(),
            SecAggError::BothSharesRequested {
                client: id,
                neighbour: victim
            }
        );
        // And it does not get a second try with an honest-looking request.
        assert!(matches!(
            c.unmask(&req),
            Err(SecAggError::AlreadyUnmasked { .. })
        ));
    }

    // A server that asks twice: first honestly, then with the victim moved to the dropped list.
    let (mut clients, mut server, req) = up_to_unmask(&cfg, &inputs, &[]);
    let mut second = req.clone();
    second.survivors.retain(|&id| id != victim);
    second.dropped.push(victim);
    for (&id, c) in &mut clients {
        let resp = c.unmask(&req).unwrap();
        assert!(resp.key_shares.is_empty());
        assert_eq!(resp.self_mask_shares.len(), n as usize);
        assert_eq!(
            c.unmask(&second).unwrap_err(),
            SecAggError::AlreadyUnmasked {
                client: id,
                round: 3
            }
        );
        server.receive_unmask(resp).unwrap();
    }
    // The honest answers alone finish the round.
    assert_eq!(server.finish().unwrap().sum, ring_sum(inputs.values(), dim));

    // A request naming a neighbour that never shared (not in U2) is refused.
    let (mut clients, _, req) = up_to_unmask(&cfg, &inputs, &[]);
    let mut stray = req.clone();
    stray.dropped.push(ids[4]);
    stray.survivors.retain(|&id| id != ids[4]);
    let c = clients.get_mut(&ids[0]).unwrap();
    assert!(c.unmask(&req).is_ok());
    let (mut clients, _, _) = up_to_unmask_without_sharer(&cfg, &inputs, ids[4]);
    let c = clients.get_mut(&ids[0]).unwrap();
    assert!(matches!(c.unmask(&stray), Err(SecAggError::BadRequest(m)) if m.contains("no shares")));

    // The server itself refuses a response holding both shares of one owner.
    let (mut clients, mut server, req) = up_to_unmask(&cfg, &inputs, &[ids[4]]);
    let mut resp = clients.get_mut(&ids[0]).unwrap().unmask(&req).unwrap();
    let mut forged = resp.key_shares[0].clone();
    assert_eq!(forged.owner, ids[4]);
    forged.owner = ids[2];
    resp.key_shares.push(forged);
    assert!(matches!(
        server.receive_unmask(resp),
        Err(SecAggError::Invalid { .. })
    ));
}

#[test]
fn seeded_rounds_are_reproducible() {
    let (n, dim) = (6u64, 200);
    let f = FixedPoint::for_clip_norm(1.0, 8).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, 1.0, 9);
    let cfg = config(7, 3, Some(4), dim, f);
    let drops = Drops {
        before_masked: [ids[2]].into(),
        ..Drops::default()
    };
    let (mut a, mut b, mut c) = (Seen::default(), Seen::default(), Seen::default());
    let ra = run(&cfg, &inputs, &drops, 42, &mut a).unwrap();
    let rb = run(&cfg, &inputs, &drops, 42, &mut b).unwrap();
    let rc = run(&cfg, &inputs, &drops, 43, &mut c).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(a.shares, b.shares);
    assert_eq!(a.masked, b.masked);
    assert_eq!(a.request, b.request);
    // Other seeds, other ciphertexts and masks, the same sum.
    assert_ne!(a.shares, c.shares);
    assert_ne!(a.masked, c.masked);
    assert_eq!(ra, rc);
}

#[test]
fn encoding_refuses_out_of_bound_and_non_finite_values() {
    let f = FixedPoint::for_bound(1.0, 10).unwrap();
    assert_eq!(
        f.encode(&[0.5, 1.01]).unwrap_err(),
        SecAggError::OutOfBound {
            index: 1,
            value: f64::from(1.01f32),
            bound: 1.0
        }
    );
    assert_eq!(
        f.encode(&[-1.5]).unwrap_err(),
        SecAggError::OutOfBound {
            index: 0,
            value: -1.5,
            bound: 1.0
        }
    );
    assert_eq!(
        f.encode_tensors(&[vec![0.0], vec![0.0, f32::NAN]])
            .unwrap_err(),
        SecAggError::NonFinite { index: 2 }
    );
    assert_eq!(
        f.encode(&[f32::INFINITY]).unwrap_err(),
        SecAggError::NonFinite { index: 0 }
    );
    assert_eq!(
        f.encode(&[f32::NEG_INFINITY]).unwrap_err(),
        SecAggError::NonFinite { index: 0 }
    );
    assert!(f.encode(&[1.0, -1.0, 0.0]).is_ok());
}

#[test]
fn a_sum_at_the_bound_cannot_wrap() {
    for max_clients in [1usize, 3, 10, 1000] {
        let f = FixedPoint::for_bound(0.75, max_clients).unwrap();
        for sign in [1.0f32, -1.0] {
            let one = f.encode(&[sign * 0.75]).unwrap();
            let sum = ring_sum(std::iter::repeat_n(&one, max_clients), 1);
            let d = f.decode_sum(&sum, max_clients).unwrap()[0];
            let want = f64::from(sign) * 0.75 * max_clients as f64;
            assert!(
                (d - want).abs() <= max_clients as f64 * f.step(),
                "{max_clients}: {d} vs {want}"
            );
            // One client more would wrap (the encoding uses the whole signed range), and so is
            // refused.
            let over = ring_sum(std::iter::repeat_n(&one, max_clients + 1), 1);
            if max_clients > 1 {
                assert_eq!(
                    (over[0] as i32).signum() as f32,
                    -sign,
                    "{max_clients} + 1 should wrap"
                );
            }
            assert_eq!(
                f.decode_sum(&over, max_clients + 1).unwrap_err(),
                SecAggError::TooManyClients {
                    got: max_clients + 1,
                    max: max_clients
                }
            );
        }
    }
}

#[test]
fn a_full_round_at_the_bound_decodes_exactly() {
    // max_clients clients, every coordinate at +C or -C, through the whole protocol.
    let (n, dim, c) = (8usize, 64, 0.25f32);
    let f = FixedPoint::for_bound(f64::from(c), n).unwrap();
    let ids = ids(n as u64);
    let inputs: BTreeMap<_, _> = ids
        .iter()
        .map(|&id| {
            let v: Vec<f32> = (0..dim).map(|i| if i % 2 == 0 { c } else { -c }).collect();
            (id, f.encode(&v).unwrap())
        })
        .collect();
    let cfg = config(1, 5, None, dim, f);
    let agg = run(&cfg, &inputs, &Drops::default(), 5, &mut Seen::default()).unwrap();
    for (i, d) in agg.decode(&f).unwrap().iter().enumerate() {
        let want = if i % 2 == 0 { 1.0 } else { -1.0 } * f64::from(c) * n as f64;
        assert!(
            (d - want).abs() <= n as f64 * f.step(),
            "coordinate {i}: {d}"
        );
    }
    // More participants than the encoding allows: refused before any share is made.
    let mut more = inputs.clone();
    more.insert(1000, inputs[&ids[0]].clone());
    assert!(matches!(
        run(&cfg, &more, &Drops::default(), 5, &mut Seen::default()),
        Err(SecAggError::Config(_))
    ));
}

#[test]
fn distributed_noise_survives_the_round() {
    // Clients noise their clipped deltas, encode with the widened range, and the server's sum
    // decodes to the float sum of the noised deltas.
    let (n, dim, clip) = (5usize, 5000, 1.0);
    let t = 4;
    let noise = DistributedNoise::for_multiplier(1.0, clip, t).unwrap();
    let f = noise.encoding(clip, n).unwrap();
    let ids = ids(n as u64);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let mut noised = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for (&id, d) in ids.iter().zip(clipped_deltas(n, dim, clip, 13)) {
        let mut d = vec![d];
        noise.add(&mut d, &mut rng);
        inputs.insert(id, f.encode_tensors(&d).unwrap());
        noised.insert(id, d.pop().unwrap());
    }
    let cfg = config(1, t, None, dim, f);
    let agg = run(&cfg, &inputs, &Drops::default(), 1, &mut Seen::default()).unwrap();
    let decoded = agg.decode(&f).unwrap();
    let mut noise_power = 0.0;
    for (i, d) in decoded.iter().enumerate() {
        let float_sum: f64 = noised.values().map(|v| f64::from(v[i])).sum();
        assert!((d - float_sum).abs() <= n as f64 * f.step());
        noise_power += float_sum * float_sum;
    }
    // The sum carries variance n sigma^2 / t >= sigma^2 (the deltas add a little more).
    let var = noise_power / dim as f64;
    let want = n as f64 / t as f64 * noise.sum_std.powi(2);
    assert!(
        var > 0.9 * want && var < 1.2 * want,
        "variance {var}, want {want}"
    );
}

#[test]
fn calls_out_of_order_are_refused_without_losing_state() {
    let f = FixedPoint::for_clip_norm(1.0, 4).unwrap();
    let cfg = config(1, 2, None, 3, f);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (mut a, adv_a) = Client::new(cfg.clone(), 1, &mut rng).unwrap();
    let (mut b, adv_b) = Client::new(cfg.clone(), 2, &mut rng).unwrap();
    let req = UnmaskRequest {
        round: 1,
        survivors: vec![1, 2],
        dropped: vec![],
    };
    assert!(matches!(
        a.unmask(&req),
        Err(SecAggError::OutOfOrder { .. })
    ));
    let mut server = Server::new(cfg.clone()).unwrap();
    assert!(matches!(
        server.close_shares(),
        Err(SecAggError::OutOfOrder { .. })
    ));
    server.receive_keys(adv_a.clone()).unwrap();
    assert_eq!(server.receive_keys(adv_a), Err(SecAggError::Duplicate(1)));
    server.receive_keys(adv_b).unwrap();
    let dir = server.close_keys().unwrap();
    // The client is still able to go on after the refused call.
    let sa = a.share_keys(&dir, &mut rng).unwrap();
    let sb = b.share_keys(&dir, &mut rng).unwrap();
    let mut wrong = sa.clone();
    wrong.round = 2;
    assert_eq!(
        server.receive_shares(wrong),
        Err(SecAggError::WrongRound {
            expected: 1,
            got: 2
        })
    );
    server.receive_shares(sa).unwrap();
    server.receive_shares(sb).unwrap();
    let routed = server.close_shares().unwrap();
    let enc = f.encode(&[0.1, 0.2, 0.3]).unwrap();
    assert_eq!(
        a.masked_input(&routed[0], &enc[..2]).unwrap_err(),
        SecAggError::Length {
            expected: 3,
            got: 2
        }
    );
}

#[test]
fn a_bad_share_fails_the_round_instead_of_giving_a_wrong_sum() {
    let (n, dim) = (5u64, 20);
    let f = FixedPoint::for_clip_norm(1.0, 8).unwrap();
    let ids = ids(n);
    let (inputs, _) = encoded_inputs(&ids, dim, &f, 1.0, 10);
    let cfg = config(3, 3, None, dim, f);
    for (dropped, tamper_key) in [(vec![], false), (vec![ids[4]], true)] {
        let (mut clients, mut server, req) = up_to_unmask(&cfg, &inputs, &dropped);
        for &id in &req.survivors {
            let mut resp = clients.get_mut(&id).unwrap().unmask(&req).unwrap();
            if id == ids[0] {
                let list = if tamper_key {
                    &mut resp.key_shares
                } else {
                    &mut resp.self_mask_shares
                };
                list[0].share.y[5] ^= 0x40;
            }
            server.receive_unmask(resp).unwrap();
        }
        let err = server.finish().unwrap_err();
        assert!(
            matches!(&err, SecAggError::Shamir(m) if m.contains("does not match")),
            "{err}"
        );
        assert!(matches!(server.finish(), Err(SecAggError::Aborted(_))));
    }
}

/// Like [`up_to_unmask`], with `gone` leaving before it sends its shares.
fn up_to_unmask_without_sharer(
    cfg: &SecAggConfig,
    inputs: &BTreeMap<ClientId, Vec<u32>>,
    gone: ClientId,
) -> (BTreeMap<ClientId, Client>, Server, UnmaskRequest) {
    let mut server = Server::new(cfg.clone()).unwrap();
    let mut clients = BTreeMap::new();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    for &id in inputs.keys() {
        let (c, adv) = Client::new(cfg.clone(), id, &mut rng).unwrap();
        server.receive_keys(adv).unwrap();
        clients.insert(id, c);
    }
    let dir = server.close_keys().unwrap();
    for (&id, c) in &mut clients {
        if id != gone {
            server
                .receive_shares(c.share_keys(&dir, &mut rng).unwrap())
                .unwrap();
        }
    }
    for r in server.close_shares().unwrap() {
        let c = clients.get_mut(&r.client).unwrap();
        server
            .receive_masked(c.masked_input(&r, &inputs[&r.client]).unwrap())
            .unwrap();
    }
    let req = server.close_masked().unwrap();
    (clients, server, req)
}

/// `Participant`, what both the browser's worker and `websr fl-client` drive: it clips the update
/// to the session's bound itself (a client that sends more than the encoding is sized for would
/// wrap the sum), encodes tensor after tensor, and masks once.
#[test]
fn participants_clip_encode_and_mask_their_own_updates() {
    use websr_federated::protocol::SecureAggregation;
    use websr_federated::secagg::Participant;
    let (clip, dims) = (1.0, [300usize, 200]);
    let dim: usize = dims.iter().sum();
    let f = FixedPoint::for_clip_norm(clip, 8).unwrap();
    let sa = SecureAggregation {
        config: config(9, 2, None, dim, f),
        clip_norm: clip,
        noise_multiplier: 0.0,
        phase: "keys".into(),
        phase_secs: 30.0,
    };
    let ids = ids(3);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    // Client 0 sends 5x the bound: its participant must clip it.
    let deltas: Vec<Vec<Vec<f32>>> = (0..ids.len())
        .map(|i| {
            let scale = if i == 0 { 5.0 } else { 0.01 };
            dims.iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| scale * rng.random_range(-1.0f32..1.0))
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut expected = vec![0.0f64; dim];
    for d in &deltas {
        let mut clipped = d.clone();
        dp::clip(&mut clipped, clip);
        for (e, x) in expected.iter_mut().zip(clipped.iter().flatten()) {
            *e += f64::from(*x);
        }
    }

    let mut server = Server::new(sa.config.clone()).unwrap();
    let mut parts = BTreeMap::new();
    for (&id, delta) in ids.iter().zip(deltas) {
        let mut rng = client_rng(1, id);
        let p = Participant::start(&sa, id, delta, &mut rng).unwrap();
        assert_eq!(p.session(), 9);
        server.receive_keys(wire(p.keys())).unwrap();
        parts.insert(id, (p, rng));
    }
    let directory = wire(&server.close_keys().unwrap());
    for (p, rng) in parts.values_mut() {
        server
            .receive_shares(wire(&p.share_keys(&directory, rng).unwrap()))
            .unwrap();
    }
    for routed in server.close_shares().unwrap() {
        let (p, _) = parts.get_mut(&routed.client).unwrap();
        let routed = wire(&routed);
        server
            .receive_masked(wire(&p.masked_input(&routed).unwrap()))
            .unwrap();
        // The encoded update is gone once masked: a second masking is refused.
        assert!(matches!(
            p.masked_input(&routed),
            Err(SecAggError::OutOfOrder { .. })
        ));
    }
    let request = wire(&server.close_masked().unwrap());
    for (p, _) in parts.values_mut() {
        server
            .receive_unmask(wire(&p.unmask(&request).unwrap()))
            .unwrap();
    }
    let decoded = server.finish().unwrap().decode(&f).unwrap();
    let tol = ids.len() as f64 * f.step() / 2.0 + 1e-9;
    for (i, (d, e)) in decoded.iter().zip(&expected).enumerate() {
        assert!((d - e).abs() <= tol, "coordinate {i}: {d} vs {e}");
    }
}
