//! LD3M (`websr::distill`): the skip connection's schedule, gradients from the synthetic patches
//! back to both codes (also through a frozen predictor), a step that lowers the loss it took,
//! determinism with a seed, and clear errors for settings that cannot work.

mod common;

use burn::tensor::{Device, Tensor};
use common::{perturbed, serial, synthetic, tiny_diffusion_spec};
use websr::diffusion::model::DiffusionNet;
use websr::diffusion::{DiffusionKind, DiffusionModel};
use websr::distill::generator::Ld3mGenerator;
use websr::distill::skip::skip_weights;
use websr::distill::{frozen, DistillConfig, Distiller};
use websr::models::{Arch, ModelSpec, SrModel};
use websr::train::data::TrainingSet;

/// A tiny DiWa x2 on a frozen, perturbed WaveLR, on an autodiff device (as `websr distill`).
fn generator(device: &Device) -> DiffusionModel {
    let one_pass = ModelSpec {
        arch: Arch::WaveLr,
        scale: 2,
        features: 8,
        body_layers: 1,
    };
    let predictor = perturbed(SrModel::init_seeded(one_pass, device, 4).unwrap(), 0.05);
    let mut spec = tiny_diffusion_spec(DiffusionKind::DiWa, false);
    spec.residual_scale = 4.0;
    frozen(DiffusionModel::on_frozen_predictor(spec, predictor, device, 7).unwrap())
}

fn data() -> TrainingSet {
    TrainingSet::from_images(&[
        synthetic(40, 40, 1),
        synthetic(48, 36, 2),
        synthetic(32, 56, 3),
    ])
}

fn config(seed: u64) -> DistillConfig {
    DistillConfig {
        images: 3,
        patch: 16,
        iterations: 2,
        batch: 2,
        real_batch: 4,
        lr: 0.02,
        momentum: 0.5,
        steps: 3,
        strength: 1.0,
        seed,
    }
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn the_skip_connection_decays_linearly_from_one_to_zero() {
    assert_eq!(skip_weights(4), vec![1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
    assert_eq!(skip_weights(2), vec![1.0, 0.0]);
    assert_eq!(skip_weights(1), vec![0.0]);
    let w = skip_weights(10);
    let steps: Vec<f64> = w.windows(2).map(|p| p[0] - p[1]).collect();
    assert!(steps.iter().all(|d| (d - 1.0 / 9.0).abs() < 1e-12), "{w:?}");
}

#[test]
fn gradients_reach_the_latent_and_the_lr_code_through_every_step() {
    let _guard = serial();
    let device = Device::flex().autodiff();
    let model = generator(&device);
    let generator = Ld3mGenerator::new(&model, 3, 1.0).unwrap();
    assert_eq!(generator.steps(), 3);
    let lr = websr::device::to_tensor(&synthetic(8, 8, 5), &device);
    let hr = websr::device::to_tensor(&synthetic(16, 16, 5), &device);
    let latent = generator.encode(lr.clone(), hr).require_grad();
    let lr_code = lr.detach().require_grad();
    let noise = latent.zeros_like().add_scalar(0.3).detach();
    let out = generator.generate(latent.clone(), lr_code.clone(), noise);
    assert_eq!(out.dims(), [1, 3, 16, 16]);
    let grads = out.square().mean().backward();
    for (name, grad) in [
        ("latent", latent.grad(&grads)),
        ("lr code", lr_code.grad(&grads)),
    ] {
        let g = values(grad.unwrap_or_else(|| panic!("no gradient on the {name}")));
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        let norm: f32 = g.iter().map(|v| v * v).sum();
        assert!(norm > 1e-12, "the {name}'s gradient is zero");
    }
}

#[test]
fn the_lr_code_gets_gradients_through_the_frozen_predictor_too() {
    let _guard = serial();
    let device = Device::flex().autodiff();
    let model = generator(&device);
    let DiffusionNet::DiWa(diwa) = &model.net else {
        unreachable!()
    };
    let lr = websr::device::to_tensor(&synthetic(8, 8, 6), &device).require_grad();
    let (_, x_init) = diwa.condition_through_input(lr.clone());
    let grads = x_init.square().sum().backward();
    let g = values(lr.grad(&grads).expect("a gradient through the predictor"));
    assert!(g.iter().any(|v| v.abs() > 1e-9));
    // The plain condition detaches the frozen prediction (training never updates it).
    let (_, detached) = diwa.condition(lr.detach().require_grad());
    assert!(!detached.is_tracked());
}

#[test]
fn a_step_lowers_the_matching_loss_of_the_iteration_it_took() {
    let _guard = serial();
    let device = Device::flex().autodiff();
    let model = generator(&device);
    let data = data();
    let mut distiller = Distiller::new(&model, &data, config(1), &device).unwrap();
    for it in 0..2 {
        let before = distiller.iteration_loss(it);
        let reported = distiller.step();
        let after = distiller.iteration_loss(it);
        assert!((reported - before).abs() <= 1e-5 * before.max(1.0));
        assert!(after < before, "iteration {it}: {before} -> {after}");
    }
}

#[test]
fn a_seed_fixes_the_distilled_set() {
    let _guard = serial();
    let device = Device::flex().autodiff();
    let model = generator(&device);
    let data = data();
    let run = |seed| {
        let mut d = Distiller::new(&model, &data, config(seed), &device).unwrap();
        d.step();
        d.step();
        (values(d.latents()), values(d.lr_codes()), d.synthetic(9))
    };
    let (a, b) = (run(3), run(3));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    assert_eq!(a.2.len(), 3);
    let c = run(4);
    assert_ne!(a.0, c.0);
}

#[test]
fn settings_that_cannot_work_are_refused_with_their_reason() {
    let _guard = serial();
    let device = Device::flex().autodiff();
    let model = generator(&device);
    let data = data();
    let error = |cfg: DistillConfig| match Distiller::new(&model, &data, cfg, &device) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let mut cfg = config(0);
    cfg.images = 0;
    assert!(error(cfg).contains("must be positive"));
    let mut cfg = config(0);
    cfg.patch = 12;
    assert!(error(cfg).contains("multiple of 8"));
    let mut cfg = config(0);
    cfg.lr = f64::NAN;
    assert!(error(cfg).contains("learning rate"));
    let mut cfg = config(0);
    cfg.strength = 0.0;
    assert!(error(cfg).contains("strength"));
    let sr3 =
        DiffusionModel::init_seeded(tiny_diffusion_spec(DiffusionKind::Sr3, false), &device, 1)
            .unwrap();
    match Distiller::new(&sr3, &data, config(0), &device) {
        Ok(_) => panic!("an SR3 generator was accepted"),
        Err(e) => assert!(e.to_string().contains("needs a DiWa generator"), "{e}"),
    }
}
