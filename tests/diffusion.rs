//! Diffusion SR: schedules, the forward process, DDPM/DDIM steps against closed forms, YODA's
//! masks and guidance, SR3/DiWa sampling on every device, and a tiny SR3 that memorises one
//! image far above bicubic.

mod common;

use common::{devices, synthetic};
use rand::rngs::StdRng;
use rand::SeedableRng;
use websr::burn::module::Module;
use websr::burn::optim::{AdamConfig, GradientsParams};
use websr::burn::tensor::{Device, Tensor, TensorData};
use websr::diffusion::forward_process::q_sample;
use websr::diffusion::noise::{host_vector, standard_normal_tensor};
use websr::diffusion::reverse::{
    ddim_indices, ddim_step, ddpm_step, DdimCoefficients, DdpmCoefficients, PosteriorVariance,
};
use websr::diffusion::sampler::{reverse_diffusion, ReverseProcess, Sampler, Transition};
use websr::diffusion::yoda::masked_l1;
use websr::diffusion::{
    DiWa, DiWaConfig, NoiseSchedule, Sr3, Sr3Config, UNetConfig, Yoda, YodaConfig,
};
use websr::image::Planar;
use websr::metrics::psnr_rgb;
use websr::resize::{degrade_bicubic, imresize};
use websr::upsample::bicubic_upscale;

/// flex sums in parallel (another test running beside a training changes the rayon split and the
/// float sums with it) and burn's weight initialisation draws from one generator per backend: the
/// tests take turns, so the training is reproducible (as in tests/train.rs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn tensor4(values: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn to_tensor(p: &Planar, device: &Device) -> Tensor<4> {
    tensor4(&p.data, [1, p.channels, p.height, p.width], device)
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

/// A U-Net small enough for a test: C = 16, two levels, 4 groups.
fn tiny_unet(in_channels: usize, out_channels: usize) -> UNetConfig {
    UNetConfig::new(in_channels, out_channels)
        .with_inner_channels(16)
        .with_channel_mults(vec![1, 2])
        .with_norm_groups(4)
}

fn tiny_sr3(device: &Device) -> Sr3 {
    Sr3Config::new(2).with_unet(tiny_unet(6, 3)).init(device)
}

fn tiny_diwa(device: &Device) -> DiWa {
    DiWaConfig::new(2)
        .with_unet(tiny_unet(24, 12))
        .with_predictor_features(16)
        .with_predictor_layers(2)
        .init(device)
}

#[test]
fn schedules_follow_their_definitions() {
    let _turn = serial();
    let s = NoiseSchedule::linear(4, 0.1, 0.4);
    let expect_betas = [0.1, 0.2, 0.3, 0.4];
    let expect_acp = [0.9, 0.72, 0.504, 0.3024];
    let expect_prev = [1.0, 0.9, 0.72, 0.504];
    for i in 0..4 {
        close(s.betas()[i], expect_betas[i], 1e-12, "beta");
        close(s.alphas_cumprod()[i], expect_acp[i], 1e-12, "acp");
        close(
            s.alphas_cumprod_prev()[i],
            expect_prev[i],
            1e-12,
            "acp_prev",
        );
    }
    close(s.alpha_bar(0), 1.0, 0.0, "alpha_bar_0");
    close(s.alpha_bar(4), 0.3024, 1e-12, "alpha_bar_T");
    let (lo, hi) = s.noise_level_bounds(1);
    close(lo, 0.9f64.sqrt(), 1e-12, "gamma low at t = 1");
    close(hi, 1.0, 0.0, "gamma high at t = 1");
    let (lo, hi) = s.noise_level_bounds(3);
    close(lo, 0.504f64.sqrt(), 1e-12, "gamma low at t = 3");
    close(hi, 0.72f64.sqrt(), 1e-12, "gamma high at t = 3");

    // Every t is drawn, and gamma always lies in its interval.
    let mut rng = StdRng::seed_from_u64(1);
    let mut seen = [false; 4];
    for _ in 0..400 {
        let (t, gamma) = s.sample_noise_level(&mut rng);
        let (lo, hi) = s.noise_level_bounds(t);
        assert!(
            (1..=4).contains(&t) && gamma >= lo && gamma <= hi,
            "t {t} gamma {gamma}"
        );
        seen[t - 1] = true;
    }
    assert!(seen.iter().all(|&s| s), "some step was never drawn");

    // Cosine: alpha_bar(t) = f(t)/f(0) until the 0.999 clip, decreasing to ~0.
    let c = NoiseSchedule::cosine(100, 0.008);
    let f = |t: f64| {
        ((t / 100.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    close(
        c.alphas_cumprod()[49],
        f(50.0) / f(0.0),
        1e-12,
        "cosine acp at t = 50",
    );
    assert!(c.betas().iter().all(|&b| b > 0.0 && b <= 0.999));
    assert!(c.alphas_cumprod().windows(2).all(|w| w[1] < w[0]));
    assert!(c.alphas_cumprod()[99] < 1e-4);
}

#[test]
fn the_forward_process_has_mean_gamma_y0_and_variance_one_minus_gamma_squared() {
    let _turn = serial();
    let device = Device::flex();
    let side = 100; // 10 000 samples per batch item
    let gammas = [0.3, 0.9];
    let y0_values = [0.5f32, -0.7];
    let y0: Vec<f32> = y0_values
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, side * side))
        .collect();
    let y0 = tensor4(&y0, [2, 1, side, side], &device);
    let mut rng = StdRng::seed_from_u64(5);
    let noise = standard_normal_tensor(&mut rng, [2, 1, side, side], &device);
    let y = values(q_sample(y0, host_vector(&gammas, &device), noise));
    let n = (side * side) as f64;
    for (k, (&gamma, &v)) in gammas.iter().zip(&y0_values).enumerate() {
        let item = &y[k * side * side..(k + 1) * side * side];
        let mean = item.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = item
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let sigma2 = 1.0 - gamma * gamma;
        // 5 standard errors: sd(mean) = sigma/sqrt(n), sd(var) = sigma^2 sqrt(2/(n-1)).
        close(
            mean,
            gamma * f64::from(v),
            5.0 * (sigma2 / n).sqrt(),
            "mean",
        );
        close(
            var,
            sigma2,
            5.0 * sigma2 * (2.0 / (n - 1.0)).sqrt(),
            "variance",
        );
    }
}

#[test]
fn ddpm_coefficients_and_one_step_match_the_closed_form() {
    let _turn = serial();
    let s = NoiseSchedule::linear(4, 0.1, 0.4);
    // Step i = 2 by hand: beta 0.3, acp 0.504, acp_prev 0.72.
    let c = DdpmCoefficients::new(&s, 2, PosteriorVariance::Beta);
    close(
        c.sqrt_recip_acp,
        (1.0f64 / 0.504).sqrt(),
        1e-12,
        "sqrt(1/acp)",
    );
    close(
        c.sqrt_recip_acp_minus_one,
        (0.496f64 / 0.504).sqrt(),
        1e-12,
        "sqrt(1/acp - 1)",
    );
    close(c.mean_y0, 0.3 * 0.72f64.sqrt() / 0.496, 1e-12, "coef1");
    close(c.mean_y, 0.28 * 0.7f64.sqrt() / 0.496, 1e-12, "coef2");
    close(c.std, 0.3f64.sqrt(), 1e-12, "std, beta");
    let p = DdpmCoefficients::new(&s, 2, PosteriorVariance::Posterior);
    close(
        p.std,
        (0.3 * 0.28 / 0.496f64).sqrt(),
        1e-12,
        "std, posterior",
    );
    // The last step returns y0: coef1 = 1, coef2 = 0, no noise.
    let last = DdpmCoefficients::new(&s, 0, PosteriorVariance::Beta);
    close(last.mean_y0, 1.0, 1e-12, "coef1 at i = 0");
    close(last.mean_y, 0.0, 0.0, "coef2 at i = 0");
    close(last.std, 0.0, 0.0, "std at i = 0");

    // One full step on known numbers; the third value's y0 is clamped to 1.
    let device = Device::flex();
    let y = [0.5, -0.2, 1.5, -1.4];
    let eps = [0.1, 0.3, -2.0, 0.0];
    let z = [1.0, -1.0, 0.5, 2.0];
    let t = |v: &[f64; 4]| tensor4(&v.map(|x| x as f32), [1, 1, 2, 2], &device);
    let out = values(ddpm_step(t(&y), t(&eps), &c, Some(t(&z))));
    for k in 0..4 {
        let y0 = ((1.0 / 0.504f64).sqrt() * y[k] - (1.0 / 0.504 - 1.0f64).sqrt() * eps[k])
            .clamp(-1.0, 1.0);
        let mean = 0.3 * 0.72f64.sqrt() / 0.496 * y0 + 0.28 * 0.7f64.sqrt() / 0.496 * y[k];
        let expect = mean + 0.3f64.sqrt() * z[k];
        close(f64::from(out[k]), expect, 1e-5, "DDPM step");
    }
    let y0_clamped = (1.0 / 0.504f64).sqrt() * 1.5 + (1.0 / 0.504 - 1.0f64).sqrt() * 2.0;
    assert!(y0_clamped > 1.0, "the test should exercise the clamp");
}

#[test]
fn ddim_steps_match_the_closed_form() {
    let _turn = serial();
    let s = NoiseSchedule::linear(10, 0.05, 0.3);
    let acp = s.alphas_cumprod();
    // eta = 1 over one index has DDPM's posterior variance.
    for i in 1..10 {
        let c = DdimCoefficients::new(&s, i, Some(i - 1), 1.0);
        let posterior = s.betas()[i] * (1.0 - acp[i - 1]) / (1.0 - acp[i]);
        close(c.sigma * c.sigma, posterior, 1e-12, "sigma^2 at eta = 1");
    }
    // With the true noise, a deterministic step lands exactly on the forward process.
    let device = Device::flex();
    let y0 = [0.3, -0.6, 0.9, 0.0];
    let eps = [1.2, -0.4, 0.1, -2.0];
    let t = |v: &[f64]| {
        tensor4(
            &v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            [1, 1, 2, 2],
            &device,
        )
    };
    let (i, j) = (8, 3);
    let y: Vec<f64> = (0..4)
        .map(|k| acp[i].sqrt() * y0[k] + (1.0 - acp[i]).sqrt() * eps[k])
        .collect();
    let c = DdimCoefficients::new(&s, i, Some(j), 0.0);
    close(c.sigma, 0.0, 0.0, "sigma at eta = 0");
    let out = values(ddim_step(t(&y), t(&eps), &c, None));
    for k in 0..4 {
        let expect = acp[j].sqrt() * y0[k] + (1.0 - acp[j]).sqrt() * eps[k];
        close(f64::from(out[k]), expect, 1e-5, "DDIM i -> j");
    }
    let to_clean = DdimCoefficients::new(&s, i, None, 0.0);
    let out = values(ddim_step(t(&y), t(&eps), &to_clean, None));
    for k in 0..4 {
        close(f64::from(out[k]), y0[k], 1e-5, "DDIM i -> clean");
    }

    assert_eq!(
        ddim_indices(1000, 10),
        [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    );
    assert_eq!(ddim_indices(4, 10), [3, 2, 1, 0]);
    assert_eq!(ddim_indices(7, 1), [6]);
    let ddim =
        Sampler::Ddim { steps: 3, eta: 0.0 }.transitions(&NoiseSchedule::linear(5, 0.1, 0.2));
    let step = |from, to| Transition { from, to };
    assert_eq!(ddim, [step(4, Some(2)), step(2, Some(0)), step(0, None)]);
    assert_eq!(
        Sampler::Ddpm
            .transitions(&NoiseSchedule::linear(5, 0.1, 0.2))
            .len(),
        5
    );
}

#[test]
fn ddim_is_deterministic_at_eta_zero_and_random_above() {
    let _turn = serial();
    let device = Device::flex();
    let schedule = NoiseSchedule::linear(50, 1e-4, 0.05);
    let dims = [1, 3, 8, 8];
    let init = standard_normal_tensor(&mut StdRng::seed_from_u64(3), dims, &device);
    let toy = |y: Tensor<4>, gamma: f64| y.mul_scalar(0.5 * gamma);
    let run = |eta: f64, seed: u64| {
        let process = ReverseProcess {
            schedule: &schedule,
            sampler: Sampler::Ddim { steps: 10, eta },
            variance: PosteriorVariance::Beta,
            first_index: None,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        values(reverse_diffusion(
            toy,
            init.clone(),
            &process,
            &mut rng,
            None,
        ))
    };
    let diff = |a: &[f32], b: &[f32]| common::max_abs_diff(a, b);
    assert_eq!(run(0.0, 1), run(0.0, 1), "same seed, eta = 0");
    assert_eq!(
        run(0.0, 1),
        run(0.0, 2),
        "eta = 0 draws no noise: the seed cannot matter"
    );
    assert_eq!(run(0.7, 1), run(0.7, 1), "same seed, eta > 0");
    assert!(
        diff(&run(0.7, 1), &run(0.7, 2)) > 1e-3,
        "eta > 0 must use its noise"
    );
    // Another initial noise changes even a deterministic sample.
    let other = standard_normal_tensor(&mut StdRng::seed_from_u64(4), dims, &device);
    let process = ReverseProcess {
        schedule: &schedule,
        sampler: Sampler::Ddim {
            steps: 10,
            eta: 0.0,
        },
        variance: PosteriorVariance::Beta,
        first_index: None,
    };
    let moved = values(reverse_diffusion(
        toy,
        other,
        &process,
        &mut StdRng::seed_from_u64(1),
        None,
    ));
    assert!(diff(&moved, &run(0.0, 1)) > 1e-3);
}

#[test]
fn with_the_exact_noise_every_sampler_returns_the_clean_signal() {
    let _turn = serial();
    let device = Device::flex();
    let y0 = to_tensor(&synthetic(8, 8, 6), &device)
        .mul_scalar(2.0)
        .sub_scalar(1.0);
    let schedule = NoiseSchedule::linear(200, 1e-4, 0.05);
    let oracle = |y: Tensor<4>, gamma: f64| {
        (y - y0.clone().mul_scalar(gamma)).div_scalar((1.0 - gamma * gamma).sqrt())
    };
    let expect = values(y0.clone());
    for (sampler, variance) in [
        (Sampler::Ddpm, PosteriorVariance::Beta),
        (Sampler::Ddpm, PosteriorVariance::Posterior),
        (
            Sampler::Ddim {
                steps: 10,
                eta: 0.0,
            },
            PosteriorVariance::Beta,
        ),
        (
            Sampler::Ddim { steps: 7, eta: 1.0 },
            PosteriorVariance::Beta,
        ),
    ] {
        let process = ReverseProcess {
            schedule: &schedule,
            sampler,
            variance,
            first_index: None,
        };
        let init = standard_normal_tensor(&mut StdRng::seed_from_u64(1), y0.dims(), &device);
        let out = reverse_diffusion(oracle, init, &process, &mut StdRng::seed_from_u64(2), None);
        let d = common::max_abs_diff(&values(out), &expect);
        assert!(
            d < 1e-4,
            "{sampler:?} {variance:?} ends {d} from the clean signal"
        );
    }
}

#[test]
fn the_unet_keeps_the_size_uses_the_noise_level_and_runs_with_attention() {
    let _turn = serial();
    let device = Device::flex();
    for attention in [false, true] {
        // Default widths (C = 32, [1, 2, 2]): sides must be multiples of 4.
        let unet = UNetConfig::new(6, 3)
            .with_attention(attention)
            .with_dropout(0.1)
            .init(&device);
        let x = standard_normal_tensor(&mut StdRng::seed_from_u64(4), [2, 6, 8, 12], &device);
        let low = unet.forward(x.clone(), host_vector(&[0.2, 0.2], &device));
        let high = unet.forward(x, host_vector(&[0.9, 0.9], &device));
        assert_eq!(low.dims(), [2, 3, 8, 12]);
        let d = common::max_abs_diff(&values(low), &values(high));
        assert!(d > 1e-4, "the noise level must reach the output ({d})");
    }
}

/// 16x16 LR: a checkerboard in the top-left 8x8 quadrant, flat grey elsewhere.
fn detail_and_flat(device: &Device) -> Tensor<4> {
    let mut data = Vec::new();
    for c in 0..3 {
        for y in 0..16 {
            for x in 0..16 {
                let v = if x < 8 && y < 8 {
                    if (x + y) % 2 == 0 {
                        0.8
                    } else {
                        0.2 + 0.05 * c as f32
                    }
                } else {
                    0.5
                };
                data.push(v);
            }
        }
    }
    tensor4(&data, [1, 3, 16, 16], device)
}

#[test]
fn yoda_masks_grow_from_the_detail_to_everything() {
    let _turn = serial();
    let device = Device::flex();
    let total = 20;
    let yoda = Yoda::from_lr(detail_and_flat(&device), [32, 32], &YodaConfig::new());
    let importance = values(yoda.importance().clone());
    assert!(importance.iter().all(|&a| (0.0..=1.0).contains(&a)));
    let masks: Vec<Vec<f32>> = (0..=total).map(|t| values(yoda.mask(t, total))).collect();
    for t in 1..=total {
        assert!(
            masks[t]
                .iter()
                .zip(&masks[t - 1])
                .all(|(now, next)| now <= next),
            "M({t}) is not inside M({})",
            t - 1
        );
    }
    assert!(masks[0].iter().all(|&m| m == 1.0), "M(0) must be full");
    let coverage = masks[total].iter().sum::<f32>() / masks[total].len() as f32;
    assert!(coverage > 0.0 && coverage < 0.5, "M(T) covers {coverage}");

    // When each pixel enters the mask (the largest t with M(t) = 1).
    let entry = |p: usize| (0..=total).rev().find(|&t| masks[t][p] == 1.0).unwrap();
    let pixels = |f: &dyn Fn(usize, usize) -> bool| -> Vec<usize> {
        (0..32 * 32).filter(|&p| f(p / 32, p % 32)).collect()
    };
    let detailed = pixels(&|y, x| (2..14).contains(&y) && (2..14).contains(&x));
    let flat = pixels(&|y, x| y >= 24 || x >= 24);
    let first_flat = flat.iter().map(|&p| entry(p)).max().unwrap();
    let last_detailed = detailed.iter().map(|&p| entry(p)).min().unwrap();
    assert!(
        last_detailed > first_flat,
        "detail enters at t >= {last_detailed}, flat at t <= {first_flat}"
    );
    // delta = 0.05 of T = 20: the flat pixels are diffused for exactly one step.
    assert_eq!(first_flat, 1);
}

#[test]
fn yoda_with_a_supplied_map_follows_the_mask_rule_and_masks_the_loss() {
    let _turn = serial();
    let device = Device::flex();
    let map = tensor4(&[0.0, 0.3, 0.6, 1.0], [1, 1, 2, 2], &device);
    let yoda = Yoda::from_map(map, 0.1);
    // M(t) = 1[max(A, 0.1) >= t/10].
    let expect =
        |t: usize| [0.1f32, 0.3, 0.6, 1.0].map(|a| if a >= t as f32 / 10.0 { 1.0 } else { 0.0 });
    for t in 0..=10 {
        assert_eq!(values(yoda.mask(t, 10)), expect(t), "t = {t}");
    }
    // Per-item steps in training.
    let two = Yoda::from_map(tensor4(&[0.5; 8], [2, 1, 2, 2], &device), 0.0);
    assert_eq!(
        values(two.masks(&[4, 6], 10)),
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    );

    let mask = yoda.mask(7, 10); // only the last pixel
    let eps = tensor4(
        &[1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
        [1, 2, 2, 2],
        &device,
    );
    let zero = eps.zeros_like();
    let loss = values(masked_l1(&mask, eps, zero))[0];
    close(f64::from(loss), (4.0 + 4.0) / 8.0, 1e-6, "masked L1");
}

#[test]
fn yoda_keeps_the_condition_outside_the_mask_and_changes_nothing_with_a_full_mask() {
    let _turn = serial();
    let device = Device::flex();
    let lr = to_tensor(&synthetic(8, 8, 4), &device);
    let schedule = NoiseSchedule::linear(6, 1e-3, 0.3);
    let empty = |size: usize| Yoda::from_map(Tensor::zeros([1, 1, size, size], &device), 0.0);
    let full = |size: usize| Yoda::from_map(Tensor::zeros([1, 1, size, size], &device), 1.0);
    let ddim = Sampler::Ddim { steps: 3, eta: 0.0 };

    // An empty mask diffuses nothing: SR3 returns the bicubic, DiWa its initial prediction.
    let sr3 = tiny_sr3(&device);
    let bicubic = values(bicubic_upscale(lr.clone(), 2).clamp(0.0, 1.0));
    for sampler in [Sampler::Ddpm, ddim] {
        let out = values(sr3.sample(lr.clone(), &schedule, sampler, 9, Some(&empty(16))));
        let d = common::max_abs_diff(&out, &bicubic);
        assert!(
            d < 1e-5,
            "SR3 {sampler:?} with an empty mask is {d} from bicubic"
        );
    }
    let diwa = tiny_diwa(&device);
    let initial = values(diwa.initial_prediction(lr.clone()));
    let out = values(diwa.sample(lr.clone(), &schedule, Sampler::Ddpm, 9, Some(&empty(8))));
    assert!(common::max_abs_diff(&out, &initial) < 1e-5);

    // A full mask is plain diffusion (with DDIM at eta = 0, YODA's own draws touch nothing else).
    let plain = values(sr3.sample(lr.clone(), &schedule, ddim, 9, None));
    let guided = values(sr3.sample(lr.clone(), &schedule, ddim, 9, Some(&full(16))));
    assert!(common::max_abs_diff(&plain, &guided) < 1e-4);
    assert!(
        common::max_abs_diff(&plain, &bicubic) > 1e-2,
        "an untrained model is not bicubic"
    );
    let plain = values(diwa.sample(lr.clone(), &schedule, ddim, 9, None));
    let guided = values(diwa.sample(lr, &schedule, ddim, 9, Some(&full(8))));
    assert!(common::max_abs_diff(&plain, &guided) < 1e-4);
}

#[test]
fn sr3_and_diwa_sample_images_in_range_on_every_device_and_agree_across_devices() {
    let _turn = serial();
    let cpu = Device::flex();
    let sr3 = tiny_sr3(&cpu);
    let diwa = tiny_diwa(&cpu);
    let schedule = NoiseSchedule::linear(3, 1e-2, 0.2);
    let samplers = [Sampler::Ddpm, Sampler::Ddim { steps: 2, eta: 0.5 }];
    let lr_image = synthetic(8, 12, 7);
    let mut reference: Vec<Vec<f32>> = Vec::new();
    for (k, (name, device)) in devices().into_iter().enumerate() {
        let sr3 = sr3.clone().to_device(&device);
        let diwa = diwa.clone().to_device(&device);
        let lr = to_tensor(&lr_image, &device).repeat_dim(0, 2);
        let yoda_sr3 = Yoda::from_lr(lr.clone(), sr3.diffused_size(8, 12), &YodaConfig::new());
        let yoda_diwa = Yoda::from_lr(lr.clone(), diwa.diffused_size(8, 12), &YodaConfig::new());
        let mut outputs = Vec::new();
        for sampler in samplers {
            for (yoda_sr3, yoda_diwa) in [(None, None), (Some(&yoda_sr3), Some(&yoda_diwa))] {
                let a = sr3.sample(lr.clone(), &schedule, sampler, 1, yoda_sr3);
                let b = diwa.sample(lr.clone(), &schedule, sampler, 1, yoda_diwa);
                for out in [a, b] {
                    assert_eq!(out.dims(), [2, 3, 16, 24], "{name}");
                    let v = values(out);
                    assert!(
                        v.iter().all(|x| (0.0..=1.0).contains(x)),
                        "{name}: out of [0, 1]"
                    );
                    // A YODA mask is a threshold: a map value within rounding of t/T may fall on
                    // either side on another backend, so only plain samples are compared.
                    if yoda_sr3.is_none() {
                        outputs.push(v);
                    }
                }
            }
        }
        // Noise drawn on the host: the same seed gives the same sample on every backend.
        if k == 0 {
            reference = outputs;
        } else {
            for (a, b) in reference.iter().zip(&outputs) {
                let d = common::max_abs_diff(a, b);
                assert!(d < 2e-3, "{name} differs from the CPU by {d}");
            }
        }
    }
}

#[test]
fn diwa_trains_its_initial_predictor_through_the_noise_loss_with_and_without_yoda() {
    let _turn = serial();
    let device = Device::flex().autodiff();
    let (hr, lr) = degrade_bicubic(&synthetic(16, 16, 8), 2);
    let (lr, hr) = (to_tensor(&lr, &device), to_tensor(&hr, &device));
    let schedule = NoiseSchedule::linear(100, 1e-4, 0.05);
    let yoda = Yoda::from_lr(lr.clone(), [8, 8], &YodaConfig::new());
    let mut model = tiny_diwa(&device);
    let before = values(model.initial_prediction(lr.clone()));
    let bicubic = values(bicubic_upscale(lr.clone(), 2).clamp(0.0, 1.0));
    assert!(
        common::max_abs_diff(&before, &bicubic) < 1e-5,
        "x_init starts at bicubic"
    );
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(3);
    for step in 0..6 {
        let guidance = (step % 2 == 1).then_some(&yoda);
        let loss = model.loss(lr.clone(), hr.clone(), &schedule, &mut rng, guidance);
        let value = values(loss.clone())[0];
        assert!(value.is_finite() && value > 0.0, "loss {value}");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let after = values(model.initial_prediction(lr));
    assert!(
        common::max_abs_diff(&after, &before) > 1e-4,
        "the noise loss must reach the initial predictor"
    );
}

/// An 8x8 HR picture: a one-pixel checkerboard on a smooth base. Its 2x2 blocks average the
/// checkerboard out, so the LR (and bicubic) cannot carry it, while a model that memorises the
/// pair can: the margin over bicubic measures what training and sampling recovered.
fn checkered_hr() -> Planar {
    let mut data = Vec::new();
    for c in 0..3 {
        for y in 0..8 {
            for x in 0..8 {
                let base = 0.5 + 0.2 * ((x as f32 * 0.7 + c as f32).sin() * (y as f32 * 0.5).cos());
                let checker = if (x + y) % 2 == 0 { 0.2 } else { -0.2 };
                data.push(base + checker);
            }
        }
    }
    Planar::new(3, 8, 8, data)
}

/// Trains a tiny SR3 on one 4x4 -> 8x8 pair; returns the PSNR of four 10-step DDIM samples
/// (one batch, each item its own noise) and of bicubic.
fn train_sr3_on_one_pair(steps: usize) -> (Vec<f64>, f64) {
    let device = Device::flex().autodiff();
    let (hr, lr) = degrade_bicubic(&checkered_hr(), 2);
    let batch = 8;
    let lr_t = to_tensor(&lr, &device).repeat_dim(0, batch);
    let hr_t = to_tensor(&hr, &device).repeat_dim(0, batch);
    let schedule = NoiseSchedule::linear(1000, 1e-4, 0.02);
    device.seed(11);
    let mut model = tiny_sr3(&device);
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(12);
    for step in 0..steps {
        let loss = model.loss(lr_t.clone(), hr_t.clone(), &schedule, &mut rng, None);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // A lower rate for the last quarter: Adam at 6e-3 still jumps around the minimum, and
        // which sample lands where then depends on float rounding (flex with and without SIMD).
        let rate = if step < steps * 3 / 4 { 6e-3 } else { 1e-3 };
        model = optim.step(rate, model, grads);
    }
    let model = model.valid();
    let lr4 = to_tensor(&lr, &device.inner()).repeat_dim(0, 4);
    let sampler = Sampler::Ddim {
        steps: 10,
        eta: 0.0,
    };
    let samples = values(model.sample(lr4, &schedule, sampler, 5, None));
    let n = samples.len() / 4;
    let ours = samples
        .chunks(n)
        .map(|s| psnr_rgb(&Planar::new(3, 8, 8, s.to_vec()), &hr, 0))
        .collect();
    (ours, psnr_rgb(&imresize(&lr, 2.0), &hr, 0))
}

#[test]
fn a_tiny_sr3_memorises_one_pair_far_above_bicubic() {
    let _turn = serial();
    let start = std::time::Instant::now();
    let (ours, bicubic) = train_sr3_on_one_pair(400);
    eprintln!(
        "SR3 on one pair: {ours:.1?} dB vs bicubic {bicubic:.1} dB in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for psnr in ours {
        assert!(
            psnr > bicubic + 10.0,
            "SR3 {psnr:.2} dB vs bicubic {bicubic:.2} dB"
        );
    }
}
