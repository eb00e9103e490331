//! Small building blocks shared by the wavelet models.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

/// He initialisation for convolutions followed by ReLU: burn's default (PyTorch's, gain
/// 1/sqrt(3)) shrinks activations layer by layer, which starves a deep plain net of gradient.
fn he() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// 3x3 convolution, stride 1, "same" padding.
pub fn conv3(channels_in: usize, channels_out: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .with_initializer(he())
        .init(device)
}

/// 3x3 convolution whose weights start at zero: the last layer of a residual predictor, so an
/// untrained model outputs exactly its bicubic base and training only has to learn the detail.
pub fn conv3_zero(channels_in: usize, channels_out: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// 3x3 convolution with stride 2 (halves height and width of even inputs).
pub fn conv3_stride2(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(he())
        .init(device)
}

/// Net2DeeperNet (Chen et al., 2016): `body` (3x3 convolutions, each followed by ReLU) grown to
/// `layers` by interleaving identity convolutions after the existing ones. An identity conv on
/// a ReLU output followed by another ReLU changes nothing, so the deeper network computes exactly
/// what the shallow one did and fine-tuning starts from its quality instead of from scratch.
pub fn deepen_body(body: Vec<Conv2d>, layers: usize) -> Vec<Conv2d> {
    assert!(
        !body.is_empty() && layers >= body.len(),
        "can only deepen a non-empty body"
    );
    let extra = layers - body.len();
    let old = body.len();
    let mut out = Vec::with_capacity(layers);
    for (i, conv) in body.into_iter().enumerate() {
        // Spread the new layers evenly: after old layer i come the ones numbered
        // extra*i/old .. extra*(i+1)/old.
        let inserted = extra * (i + 1) / old - extra * i / old;
        // A fresh identity per slot: clones of one would share parameter ids, and the
        // optimizer updates each id once, so every copy after the first would never train.
        let identities: Vec<Conv2d> = (0..inserted).map(|_| identity_like(&conv)).collect();
        out.push(conv);
        out.extend(identities);
    }
    out
}

/// A 3x3 convolution of `conv`'s shape that copies its input: a one at the centre tap from each
/// channel to itself, zero bias.
fn identity_like(conv: &Conv2d) -> Conv2d {
    let weight = conv.weight.val();
    let [out_ch, in_ch, kh, kw] = weight.dims();
    assert_eq!(out_ch, in_ch, "identity needs as many outputs as inputs");
    let device = weight.device();
    let mut values = vec![0f32; out_ch * in_ch * kh * kw];
    for c in 0..out_ch {
        values[((c * in_ch + c) * kh + kh / 2) * kw + kw / 2] = 1.0;
    }
    let mut identity = conv.clone();
    identity.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [out_ch, in_ch, kh, kw]),
        &device,
    ));
    identity.bias = conv
        .bias
        .as_ref()
        .map(|b| Param::from_tensor(b.val().zeros_like()));
    identity
}
