//! float16 weights on the wire: converting keeps the metadata and halves the file, loading widens
//! to f32 exactly and gives (nearly) the f32 model's output, for both kinds of model; a bad f16
//! file, a tensor of another dtype, or a value f16 cannot hold is refused with a clear message.

mod common;

use common::{devices, max_abs_diff, perturbed, rewrite, synthetic, tiny_diffusion_spec};
use safetensors::{Dtype, SafeTensors};
use websr::device::with_seeded_device;
use websr::diffusion::{DiffusionKind, DiffusionModel};
use websr::models::{Arch, ModelSpec, SrModel};
use websr::upscale::run_model;
use websr::weights::{self, to_f16_bytes, to_f32_bytes};
use websr::{Model, WebSrError};

fn small_spec(arch: Arch) -> ModelSpec {
    ModelSpec {
        arch,
        scale: 4,
        features: 16,
        body_layers: 2,
    }
}

/// Every tensor's dtype.
fn dtypes(bytes: &[u8]) -> Vec<Dtype> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    st.iter().map(|(_, view)| view.dtype()).collect()
}

/// Asserts that two files hold the same tensors (names, dtypes, values), whatever the order of
/// their headers.
fn assert_same_tensors(a: &[u8], b: &[u8], what: &str) {
    let (a, b) = (
        SafeTensors::deserialize(a).unwrap(),
        SafeTensors::deserialize(b).unwrap(),
    );
    let (mut names_a, mut names_b) = (a.names(), b.names());
    names_a.sort_unstable();
    names_b.sort_unstable();
    assert_eq!(names_a, names_b, "{what}");
    for name in names_a {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{what}: {name}");
        assert!(x.data() == y.data(), "{what}: {name} holds other values");
    }
}

#[test]
fn f16_weights_load_widened_and_upscale_like_the_f32_model() {
    for (name, device) in devices() {
        for arch in Arch::ALL {
            // Seeded: burn's generator is global, and an unseeded draw made the margin below
            // vary from run to run (DwsrDwa once reached 2.1e-3).
            let model = with_seeded_device(&device, 11, || {
                perturbed(SrModel::init(small_spec(arch), &device).unwrap(), 0.05)
            });
            let f32_bytes = weights::to_bytes(&model).unwrap();
            let f16_bytes = to_f16_bytes(&f32_bytes).unwrap();
            assert!(dtypes(&f16_bytes).iter().all(|&d| d == Dtype::F16));
            // The tensors are nearly all of the file: it halves.
            assert!(f16_bytes.len() * 10 < f32_bytes.len() * 6, "{arch:?}");
            assert_eq!(weights::read_spec(&f16_bytes).unwrap(), model.spec);

            let loaded = weights::from_bytes(&f16_bytes, &device).unwrap();
            // Loading widens exactly: the loaded parameters are the f16 values.
            assert_same_tensors(
                &weights::to_bytes(&loaded).unwrap(),
                &to_f32_bytes(&f16_bytes).unwrap(),
                &format!("{name} {arch:?}"),
            );
            let lr = synthetic(8, 8, 3);
            let a = run_model(&model, &lr, &device);
            let b = run_model(&loaded, &lr, &device);
            let diff = max_abs_diff(&a.data, &b.data);
            // f16 keeps 11 significant bits: weights move by up to 2^-11 of themselves, and a
            // deep, perturbed network (DWSR+DWA) amplifies that to a few thousandths; the bound
            // stays under 1.3 levels of an 8-bit image.
            assert!(diff < 5e-3, "{name} {arch:?}: f16 output differs by {diff}");
            assert!(diff > 0.0, "{name} {arch:?}: the weights were not rounded");
        }
    }
}

#[test]
fn f16_diffusion_weights_load_through_the_same_loader() {
    let (_, device) = devices().remove(0);
    let spec = tiny_diffusion_spec(DiffusionKind::DiWa, true);
    let model = DiffusionModel::init_seeded(spec.clone(), &device, 12).unwrap();
    let f16_bytes = to_f16_bytes(&model.to_bytes().unwrap()).unwrap();
    assert!(dtypes(&f16_bytes).iter().all(|&d| d == Dtype::F16));
    let Model::Diffusion(loaded) = Model::from_bytes(&f16_bytes, &device).unwrap() else {
        panic!("a diffusion file loaded as a one-pass model");
    };
    assert_eq!(loaded.spec, spec);
    assert_same_tensors(
        &loaded.to_bytes().unwrap(),
        &to_f32_bytes(&f16_bytes).unwrap(),
        "diffusion",
    );
}

#[test]
fn converting_is_idempotent_and_f32_round_trips() {
    let (_, device) = devices().remove(0);
    let model = with_seeded_device(&device, 14, || {
        perturbed(
            SrModel::init(small_spec(Arch::WaveLr), &device).unwrap(),
            0.05,
        )
    });
    let f32_bytes = weights::to_bytes(&model).unwrap();
    let f16_bytes = to_f16_bytes(&f32_bytes).unwrap();
    // A file already in the target format comes back byte for byte (its SHA-256 stays).
    assert_eq!(to_f16_bytes(&f16_bytes).unwrap(), f16_bytes);
    assert_eq!(to_f32_bytes(&f32_bytes).unwrap(), f32_bytes);
    // f16 -> f32 -> f16 loses nothing.
    let widened = to_f32_bytes(&f16_bytes).unwrap();
    assert!(dtypes(&widened).iter().all(|&d| d == Dtype::F32));
    assert_same_tensors(
        &to_f16_bytes(&widened).unwrap(),
        &f16_bytes,
        "f16 -> f32 -> f16",
    );
}

fn expect_weights_error(result: websr::Result<impl Sized>, needle: &str) {
    match result {
        Err(WebSrError::Weights(msg)) => assert!(msg.contains(needle), "'{msg}' lacks '{needle}'"),
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("bad weights were accepted (expected '{needle}')"),
    }
}

/// `bytes` with the first value of `tail.weight` replaced by `value` (little-endian bytes).
fn with_first_tail_value(bytes: &[u8], value: &[u8]) -> Vec<u8> {
    rewrite(bytes, |h, data| {
        let start = h["tail.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start..start + value.len()].copy_from_slice(value);
    })
}

/// `bytes` with the dtype of `tail.weight` relabelled (same element size, so the file stays
/// well-formed).
fn with_tail_dtype(bytes: &[u8], dtype: &str) -> Vec<u8> {
    rewrite(bytes, |h, _| h["tail.weight"]["dtype"] = dtype.into())
}

#[test]
fn bad_f16_files_and_other_dtypes_get_clear_errors() {
    let (_, device) = devices().remove(0);
    let model = SrModel::init_seeded(small_spec(Arch::Dwsr), &device, 13).unwrap();
    let f32_bytes = weights::to_bytes(&model).unwrap();
    let f16_bytes = to_f16_bytes(&f32_bytes).unwrap();
    assert!(weights::from_bytes(&f16_bytes, &device).is_ok());

    for bad in [half::f16::NAN, half::f16::INFINITY] {
        let file = with_first_tail_value(&f16_bytes, &bad.to_le_bytes());
        expect_weights_error(
            weights::from_bytes(&file, &device),
            "'tail.weight' holds NaN",
        );
    }
    let bf16 = with_tail_dtype(&f16_bytes, "BF16");
    expect_weights_error(weights::from_bytes(&bf16, &device), "'tail.weight' is BF16");
    let int = with_tail_dtype(&f32_bytes, "I32");
    expect_weights_error(weights::from_bytes(&int, &device), "'tail.weight' is I32");
    expect_weights_error(to_f16_bytes(&int), "F32 or F16");

    // Writing f16: a value beyond its range (65504) is refused, not shipped as infinity.
    let huge = with_first_tail_value(&f32_bytes, &1.0e5f32.to_le_bytes());
    assert!(weights::from_bytes(&huge, &device).is_ok());
    expect_weights_error(to_f16_bytes(&huge), "beyond float16's range");
    let nan = with_first_tail_value(&f32_bytes, &f32::NAN.to_le_bytes());
    expect_weights_error(to_f16_bytes(&nan), "NaN");
}
