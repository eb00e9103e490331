//! Each strategy and the DP maths against values computed by hand on small vectors.

use rand::rngs::StdRng;
use rand::SeedableRng;
use websr_aggregator::dp::{self, Accountant};
use websr_aggregator::strategy::*;

fn u(tensors: Vec<Vec<f32>>, n: u64) -> Update {
    Update {
        tensors,
        num_examples: n,
    }
}

fn scalars(values: &[f32]) -> Vec<Update> {
    values.iter().map(|&v| u(vec![vec![v]], 1)).collect()
}

fn close(got: &[Vec<f32>], want: &[Vec<f32>], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }
}

#[test]
fn fedavg_weights_by_num_examples() {
    let ups = [
        u(vec![vec![1.0, 2.0], vec![3.0]], 1),
        u(vec![vec![3.0, 4.0], vec![5.0]], 3),
    ];
    // (1*1 + 3*3)/4, (1*2 + 3*4)/4, (1*3 + 3*5)/4
    close(&fedavg(&ups).unwrap(), &[vec![2.5, 3.5], vec![4.5]], 0.0);
    assert_eq!(
        fedavg(&[]),
        Err(StrategyError::TooFew {
            strategy: "fedavg",
            need: 1,
            got: 0
        })
    );
    let ragged = [u(vec![vec![1.0]], 1), u(vec![vec![1.0, 2.0]], 1)];
    assert_eq!(fedavg(&ragged), Err(StrategyError::Mismatch));
}

#[test]
fn fedprox_is_fedavg_on_the_server_and_sends_mu() {
    let s = FedProx {
        mu: 0.05,
        server_lr: 1.0,
    };
    assert_eq!(s.client_config().prox_mu, 0.05);
    assert_eq!(FedAvg { server_lr: 1.0 }.client_config().prox_mu, 0.0);
    let ups = [u(vec![vec![1.0]], 1), u(vec![vec![4.0]], 2)];
    close(&s.aggregate(&ups).unwrap(), &[vec![3.0]], 1e-7);
    let mut g = vec![vec![10.0]];
    s.apply(&mut g, &[vec![3.0]], &mut OptState::default());
    assert_eq!(g, vec![vec![13.0]]);
}

#[test]
fn server_lr_scales_the_step() {
    let mut g = vec![vec![1.0, -1.0]];
    server_sgd(&mut g, &[vec![2.0, 4.0]], 0.5);
    assert_eq!(g, vec![vec![2.0, 1.0]]);
}

#[test]
fn median_is_coordinate_wise_and_averages_the_middle_pair() {
    let ups = [
        u(vec![vec![1.0, 10.0, -2.0]], 1),
        u(vec![vec![3.0, 0.0, 5.0]], 100),
        u(vec![vec![2.0, 20.0, 1.0]], 1),
    ];
    close(
        &coordinate_median(&ups).unwrap(),
        &[vec![2.0, 10.0, 1.0]],
        0.0,
    );
    // Even count: sorted 1, 2, 4, 10 -> (2 + 4) / 2.
    close(
        &coordinate_median(&scalars(&[1.0, 10.0, 2.0, 4.0])).unwrap(),
        &[vec![3.0]],
        0.0,
    );
}

#[test]
fn trimmed_mean_cuts_floor_beta_n_at_each_end() {
    let ups = [
        u(vec![vec![1.0, 0.0]], 1),
        u(vec![vec![2.0, 100.0]], 1),
        u(vec![vec![10.0, -100.0]], 1),
        u(vec![vec![4.0, 1.0]], 1),
    ];
    // beta 0.25, n 4 -> cut 1 each end: (2 + 4) / 2 and (0 + 1) / 2.
    close(&trimmed_mean(&ups, 0.25).unwrap(), &[vec![3.0, 0.5]], 0.0);
    // beta 0.2, n 4 -> floor(0.8) = 0: the plain mean.
    close(&trimmed_mean(&ups, 0.2).unwrap(), &[vec![4.25, 0.25]], 1e-6);
    assert_eq!(trim_count(10, 0.1), 1);
}

#[test]
fn krum_picks_the_update_closest_to_its_neighbours() {
    // f = 1, n = 5: each score sums the 2 smallest squared distances.
    // 0: 1 + 4 = 5; 1: 1 + 1 = 2; 2: 1 + 4 = 5; 4: 4 + 9 = 13; 100: huge -> picks 1.
    let ups = scalars(&[0.0, 1.0, 2.0, 4.0, 100.0]);
    close(&krum(&ups, 1).unwrap(), &[vec![1.0]], 0.0);
    // Distances span every tensor: the outlier sits in the second tensor only.
    let ups = vec![
        u(vec![vec![0.0], vec![0.0]], 1),
        u(vec![vec![0.1], vec![0.0]], 1),
        u(vec![vec![0.0], vec![0.2]], 1),
        u(vec![vec![0.0], vec![50.0]], 1),
        u(vec![vec![0.35], vec![0.0]], 1),
    ];
    // Scores: #0: 0.01 + 0.04 = 0.05; #1: 0.01 + 0.05 = 0.06; #2: 0.04 + 0.05 = 0.09;
    // #4: 0.0625 + 0.1225 = 0.185; #3: > 2500 -> picks #0.
    close(&krum(&ups, 1).unwrap(), &[vec![0.0], vec![0.0]], 0.0);
    assert_eq!(
        krum(&scalars(&[0.0, 1.0, 2.0, 3.0]), 1),
        Err(StrategyError::TooFew {
            strategy: "krum",
            need: 5,
            got: 4
        })
    );
    assert_eq!(
        Krum {
            f: 2,
            server_lr: 1.0
        }
        .min_updates(),
        7
    );
}

const P: Adaptive = Adaptive {
    eta: 0.1,
    beta1: 0.9,
    beta2: 0.99,
    tau: 0.1,
};

#[test]
fn fedadam_follows_reddi_et_al() {
    let mut x = vec![vec![1.0f32]];
    let mut opt = OptState::default();
    // m = 0.1 * 0.5 = 0.05; v = 0.99 * 0.01 + 0.01 * 0.25 = 0.0124;
    // x = 1 + 0.1 * 0.05 / (sqrt(0.0124) + 0.1) = 1 + 0.005 / 0.2113553 = 1.0236568
    fedadam_step(&mut x, &[vec![0.5]], &mut opt, P);
    close(&opt.m, &[vec![0.05]], 1e-8);
    close(&opt.v, &[vec![0.0124]], 1e-8);
    close(&x, &[vec![1.023_656_8]], 1e-6);
    // m = 0.045 - 0.05 = -0.005; v = 0.012276 + 0.0025 = 0.014776;
    // x += 0.1 * -0.005 / (0.1215566 + 0.1) = -0.0022568
    fedadam_step(&mut x, &[vec![-0.5]], &mut opt, P);
    close(&opt.m, &[vec![-0.005]], 1e-8);
    close(&opt.v, &[vec![0.014_776]], 1e-8);
    close(&x, &[vec![1.021_400_1]], 1e-6);
    // The trait object does the same.
    let mut y = vec![vec![1.0f32]];
    let mut o = OptState::default();
    FedAdam(P).apply(&mut y, &[vec![0.5]], &mut o);
    close(&y, &[vec![1.023_656_8]], 1e-6);
}

#[test]
fn fedyogi_moves_v_by_the_sign_of_v_minus_d2() {
    let mut x = vec![vec![0.0f32]];
    let mut opt = OptState::default();
    // v0 = 0.01 < d^2 = 0.25: v = 0.01 + 0.01 * 0.25 = 0.0125 (Adam would give 0.0124).
    // x = 0.1 * 0.05 / (sqrt(0.0125) + 0.1) = 0.005 / 0.2118034 = 0.0236068
    fedyogi_step(&mut x, &[vec![0.5]], &mut opt, P);
    close(&opt.v, &[vec![0.0125]], 1e-8);
    close(&x, &[vec![0.023_606_8]], 1e-6);
    // v = 0.0125 > d^2 = 0.0025: v = 0.0125 - 0.01 * 0.0025 = 0.012475 (Adam: 0.0124).
    // m = 0.045 + 0.005 = 0.05; x += 0.1 * 0.05 / (0.1116915 + 0.1) = 0.0236192
    fedyogi_step(&mut x, &[vec![0.05]], &mut opt, P);
    close(&opt.v, &[vec![0.012_475]], 1e-8);
    close(&opt.m, &[vec![0.05]], 1e-8);
    close(&x, &[vec![0.047_226]], 2e-6);
}

#[test]
fn clipping_scales_to_the_bound() {
    let mut d = vec![vec![3.0, 0.0], vec![4.0]]; // norm 5
    assert_eq!(dp::clip(&mut d, 10.0), 5.0);
    assert_eq!(d, vec![vec![3.0, 0.0], vec![4.0]]);
    assert_eq!(dp::clip(&mut d, 1.0), 5.0);
    close(&d, &[vec![0.6, 0.0], vec![0.8]], 1e-7);
    assert!(dp::within_bound(1.0 + 1e-5, 1.0));
    assert!(!dp::within_bound(1.001, 1.0));
    // z * 2C / n: the replace-one sensitivity of the mean of n clipped updates.
    assert_eq!(dp::mean_sensitivity(2.0, 4), 1.0);
    assert_eq!(dp::noise_std(1.1, 2.0, 4), 1.1);
}

#[test]
fn client_weights_are_capped_at_a_multiple_of_the_median_claim() {
    assert_eq!(capped_weights(&[10, 10, 1_000_000], 4.0), [10, 10, 40]);
    assert_eq!(capped_weights(&[5, 7, 9], 4.0), [5, 7, 9]);
    // Median of an even count: the lower middle claim; a ratio below 1 acts as 1.
    assert_eq!(capped_weights(&[1, 2, 100, 100], 0.5), [1, 2, 2, 2]);
    assert!(capped_weights(&[], 4.0).is_empty());
}

#[test]
fn gaussian_noise_has_the_requested_std() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut d = vec![vec![0.0f32; 200_000]];
    dp::add_gaussian_noise(&mut d, 0.5, &mut rng);
    let n = d[0].len() as f64;
    let mean = d[0].iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = d[0]
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(mean.abs() < 0.005, "mean {mean}");
    assert!((var.sqrt() - 0.5).abs() < 0.005, "std {}", var.sqrt());
}

#[test]
fn accountant_matches_the_rdp_formula() {
    // sigma 1, delta 1e-5: rho = 0.5, eps = 0.5 + 2 sqrt(0.5 ln 1e5) = 5.298526
    let mut acc = Accountant::new(1e-5);
    assert_eq!(acc.epsilon(), Some(0.0));
    let e1 = acc.record(1.0).unwrap();
    assert!((e1 - 5.298_526).abs() < 1e-5, "{e1}");
    for _ in 0..3 {
        acc.record(1.0);
    }
    // 4 rounds: rho = 2, eps = 2 + 2 sqrt(2 ln 1e5) = 11.597052
    let e4 = acc.epsilon().unwrap();
    assert!((e4 - 11.597_052).abs() < 1e-5, "{e4}");
    // The closed form is the minimum over orders: no grid order does better.
    let grid = (1..100_000)
        .map(|i| 1.0 + i as f64 * 1e-3)
        .map(|a| a * 2.0 + (1e5f64).ln() / (a - 1.0))
        .fold(f64::INFINITY, f64::min);
    assert!(grid >= e4 - 1e-9 && grid - e4 < 1e-5, "grid {grid} vs {e4}");
    assert!((dp::best_order(2.0, 1e-5) - (1.0 + (1e5f64.ln() / 2.0).sqrt())).abs() < 1e-12);
    // A round without noise has no guarantee.
    assert_eq!(acc.record(0.0), None);
    assert_eq!(acc.epsilon(), None);
}

#[test]
fn median_and_trimmed_mean_match_a_full_sort_on_random_columns() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for n in 1..=12usize {
        let ups: Vec<Update> = (0..n)
            .map(|_| {
                u(
                    vec![(0..50).map(|_| rng.random_range(-5.0..5.0)).collect()],
                    1,
                )
            })
            .collect();
        let sorted_column = |i: usize| {
            let mut c: Vec<f32> = ups.iter().map(|u| u.tensors[0][i]).collect();
            c.sort_by(f32::total_cmp);
            c
        };
        let median = coordinate_median(&ups).unwrap();
        for beta in [0.0, 0.1, 0.25, 0.4] {
            let k = trim_count(n, beta);
            if n < 2 * k + 1 {
                continue;
            }
            let trimmed = trimmed_mean(&ups, beta).unwrap();
            for (i, &got) in trimmed[0].iter().enumerate() {
                let c = sorted_column(i);
                let kept = &c[k..n - k];
                let want = kept.iter().map(|&v| f64::from(v)).sum::<f64>() / kept.len() as f64;
                assert!((f64::from(got) - want).abs() < 1e-5, "n {n} beta {beta}");
            }
        }
        for (i, &got) in median[0].iter().enumerate() {
            let c = sorted_column(i);
            let want = if n % 2 == 1 {
                f64::from(c[n / 2])
            } else {
                (f64::from(c[n / 2 - 1]) + f64::from(c[n / 2])) / 2.0
            };
            assert!((f64::from(got) - want).abs() < 1e-6, "n {n}");
        }
    }
}

/// Tensors long enough that the coordinates are split among threads and gathered in many blocks
/// (with a ragged last block), against a plain per-coordinate sort and a plain weighted sum.
#[test]
fn coordinate_rules_on_large_tensors_match_a_plain_reference() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let lens = [3, 100_003, 16_389];
    let ups: Vec<Update> = (0..21)
        .map(|_| {
            u(
                lens.iter()
                    .map(|&len| (0..len).map(|_| rng.random_range(-1.0..1.0)).collect())
                    .collect(),
                rng.random_range(1..50),
            )
        })
        .collect();
    let median = coordinate_median(&ups).unwrap();
    let trimmed = trimmed_mean(&ups, 0.2).unwrap();
    let mean = fedavg(&ups).unwrap();
    let total: f64 = ups.iter().map(|u| u.num_examples as f64).sum();
    for (t, &len) in lens.iter().enumerate() {
        for i in 0..len {
            let mut column: Vec<f32> = ups.iter().map(|u| u.tensors[t][i]).collect();
            let want_mean: f64 = ups
                .iter()
                .map(|u| u.num_examples as f64 / total * f64::from(u.tensors[t][i]))
                .sum();
            assert_eq!(mean[t][i], want_mean as f32, "fedavg, tensor {t}, {i}");
            column.sort_by(f32::total_cmp);
            assert_eq!(median[t][i], column[10], "median, tensor {t}, {i}");
            let kept = &column[4..17];
            let want = kept.iter().map(|&v| f64::from(v)).sum::<f64>() / kept.len() as f64;
            assert!(
                (f64::from(trimmed[t][i]) - want).abs() < 1e-6,
                "trimmed mean, tensor {t}, {i}"
            );
        }
    }
}
