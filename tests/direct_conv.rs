//! The diffusion U-Net's convolutions on `websr_kernels`' direct kernel (the browser's CPU
//! path) against burn's. Its own test binary: the U-Net test switches the process-wide
//! direct-convolution flag, which no other test here reads.

mod common;

use common::{max_abs_diff, values};
use websr::burn::nn::conv::{Conv2d, Conv2dConfig};
use websr::burn::nn::PaddingConfig2d;
use websr::burn::tensor::{Device, Distribution, Tensor, TensorData};
use websr::device::with_seeded_device;
use websr::diffusion::UNetConfig;
use websr::models::{direct_conv, wavelr_direct, SrNet};
use websr::weights;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_bias(bias)
        .init(device)
}

fn random_input(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    with_seeded_device(device, seed, || {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    })
}

#[test]
fn a_same_3x3_convolution_matches_burn_for_any_width_batch_and_bias() {
    let device = Device::flex();
    // Widths that are and are not multiples of the kernel's 4 lanes and 16-channel blocks,
    // SR3's 6 input channels, DiWa's 24, a batch of 2, odd sides, with and without bias.
    for (cin, cout, n, h, w, bias) in [
        (24, 32, 1, 8, 10, true),
        (6, 32, 2, 5, 7, true),
        (32, 12, 1, 9, 6, true),
        (96, 64, 1, 4, 4, false),
        (3, 5, 2, 3, 1, true),
    ] {
        let layer = with_seeded_device(&device, 3, || conv(cin, cout, 3, 1, bias, &device));
        assert!(direct_conv::is_same_3x3(&layer));
        let x = random_input([n, cin, h, w], 4, &device);
        let burn = values(layer.forward(x.clone()));
        let direct = direct_conv::direct(&layer, x);
        assert_eq!(direct.dims(), [n, cout, h, w]);
        let diff = max_abs_diff(&burn, &values(direct));
        assert!(
            diff < 1e-4,
            "{cin}->{cout}, batch {n}, {h}x{w}: direct and burn differ by {diff}"
        );
        // The comparison means something: the output is far from zero.
        assert!(burn.iter().map(|v| v.abs()).fold(0.0, f32::max) > 0.1);
    }
}

#[test]
fn only_same_3x3_stride_1_convolutions_take_the_kernel() {
    let device = Device::flex();
    assert!(!direct_conv::is_same_3x3(&conv(8, 8, 3, 2, true, &device)));
    assert!(!direct_conv::is_same_3x3(&conv(8, 8, 1, 1, true, &device)));
    let valid = Conv2dConfig::new([8, 8], [3, 3])
        .with_padding(PaddingConfig2d::Valid)
        .init(&device);
    assert!(!direct_conv::is_same_3x3(&valid));
    let dilated = Conv2dConfig::new([8, 8], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_dilation([2, 2])
        .init(&device);
    assert!(!direct_conv::is_same_3x3(&dilated));
    let same = Conv2dConfig::new([8, 8], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    assert!(direct_conv::is_same_3x3(&same));
}

/// The whole U-Net (DiWa's shape: 24 channels in, 12 out, levels 1-2-2, with attention so the
/// 1x1 and stride-2 layers that stay on burn are exercised too) gives burn's noise estimate
/// when its convolutions take the kernel, and so does WaveLR's forward; an autodiff device
/// never takes it.
#[test]
fn the_unet_and_wavelr_on_the_direct_path_match_burn() {
    let device = Device::flex();
    let unet = with_seeded_device(&device, 7, || {
        UNetConfig::new(24, 12).with_attention(true).init(&device)
    });
    let x = random_input([2, 24, 8, 12], 8, &device);
    let gamma = Tensor::<1>::from_data(TensorData::new(vec![0.3f32, 0.9], [2]), &device);

    wavelr_direct::set_enabled(false);
    assert!(!wavelr_direct::applies(&device));
    let burn = values(unet.forward(x.clone(), gamma.clone()));

    wavelr_direct::set_enabled(true);
    assert!(wavelr_direct::applies(&device));
    #[cfg(feature = "train")]
    assert!(!wavelr_direct::applies(&device.clone().autodiff()));
    let direct = values(unet.forward(x, gamma));
    // WaveLR's own forward (DiWa's frozen predictor calls it): the shipped x4 model, whose
    // trained tail makes every layer count.
    let wavelr = weights::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/wavelr-x4.safetensors"),
        &device,
    )
    .unwrap();
    let SrNet::WaveLr(net) = &wavelr.net else {
        panic!("wavelr-x4 is a WaveLR model")
    };
    let lr = with_seeded_device(&device, 9, || {
        Tensor::<4>::random([1, 3, 11, 14], Distribution::Uniform(0.0, 1.0), &device)
    });
    let wavelr_direct_out = values(net.forward(lr.clone()));
    wavelr_direct::set_enabled(false);
    let wavelr_burn_out = values(net.forward(lr.clone()));
    wavelr_direct::set_enabled(cfg!(target_arch = "wasm32"));

    let diff = max_abs_diff(&burn, &direct);
    assert!(diff < 1e-4, "direct and burn U-Net differ by {diff}");
    assert!(burn.iter().map(|v| v.abs()).fold(0.0, f32::max) > 0.01);
    let diff = max_abs_diff(&wavelr_burn_out, &wavelr_direct_out);
    assert!(diff < 1e-4, "direct and burn WaveLR differ by {diff}");
    let bicubic = values(websr::upsample::bicubic_upscale(lr, 4));
    assert!(
        max_abs_diff(&wavelr_burn_out, &bicubic) > 0.01,
        "the network must add detail for the comparison to mean anything"
    );
}
