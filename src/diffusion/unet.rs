//! The conditional U-Net that predicts the noise, SR3/WaveGrad style as in DiWa's
//! `wave_modules/unet.py` (methods.md §2), with small defaults for the browser.
//!
//! - Noise-level embedding: SR3's sinusoidal encoding of `gamma` (`C` features,
//!   frequencies `10000^(-k/(C/2))`, `[sin, cos]`) -> Linear(C, 4C) -> Swish -> Linear(4C, C).
//!   DiWa feeds the raw scalar to Linear(1, 4C) instead; the encoding gives the first layer
//!   several smooth functions of `gamma` to start from and costs nothing.
//! - [`ResnetBlock`]: `GN -> Swish -> Conv3x3`, `+ Linear(emb)` broadcast over the pixels,
//!   `GN -> Swish -> Dropout -> Conv3x3`, plus the input (through a 1x1 conv when the widths
//!   differ).
//! - Down path: conv_in, then per level `res_blocks` blocks and a stride-2 3x3 conv (not after
//!   the last level); every output is kept as a skip. Mid: block, optional self-attention,
//!   block. Up path: per level `res_blocks + 1` blocks on `cat[x, skip]`, then nearest x2 +
//!   Conv3x3 (not after the top level). Out: GN -> Swish -> Conv3x3.
//! - Height and width must be multiples of `2^(levels - 1)`.
//! - Inference on the browser's CPU path runs the same 3x3 convolutions (stride 1) on
//!   websr-kernels' direct kernel ([`crate::models::direct_conv`]); everything else is burn's.

use crate::models::direct_conv;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Condition plus noisy signal: 6 for SR3 (RGB + RGB), 24 for DiWa (12 + 12 sub-bands).
    pub in_channels: usize,
    /// The predicted noise: 3 for SR3, 12 for DiWa.
    pub out_channels: usize,
    /// `C`, the width of the first level and of the noise-level embedding (even).
    #[config(default = 32)]
    pub inner_channels: usize,
    /// Width of each level as a multiple of `C`; the number of levels is its length.
    #[config(default = "vec![1, 2, 2]")]
    pub channel_mults: Vec<usize>,
    /// ResNet blocks per level on the way down (one more on the way up).
    #[config(default = 1)]
    pub res_blocks: usize,
    /// GroupNorm groups; must divide `C`.
    #[config(default = 8)]
    pub norm_groups: usize,
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Single-head self-attention in the middle, at the lowest resolution (SR3 has it, DiWa not).
    #[config(default = false)]
    pub attention: bool,
}

/// `GN -> Swish -> [Dropout] -> Conv3x3`.
#[derive(Module, Debug)]
struct NormActConv {
    norm: GroupNorm,
    dropout: Option<Dropout>,
    conv: Conv2d,
}

impl NormActConv {
    fn new(
        channels_in: usize,
        channels_out: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        NormActConv {
            norm: GroupNormConfig::new(groups, channels_in).init(device),
            dropout: (dropout > 0.0).then(|| DropoutConfig::new(dropout).init()),
            conv: conv(channels_in, channels_out, 3, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = silu(self.norm.forward(x));
        if let Some(dropout) = &self.dropout {
            x = dropout.forward(x);
        }
        direct_conv::forward(&self.conv, x)
    }
}

/// A ResNet block conditioned on the noise-level embedding.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    block1: NormActConv,
    noise: Linear,
    block2: NormActConv,
    skip: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(
        channels_in: usize,
        channels_out: usize,
        emb: usize,
        cfg: &UNetConfig,
        device: &Device,
    ) -> Self {
        let groups = cfg.norm_groups;
        ResnetBlock {
            block1: NormActConv::new(channels_in, channels_out, groups, 0.0, device),
            noise: LinearConfig::new(emb, channels_out).init(device),
            block2: NormActConv::new(channels_out, channels_out, groups, cfg.dropout, device),
            skip: (channels_in != channels_out)
                .then(|| conv(channels_in, channels_out, 1, 1, device)),
        }
    }

    /// The block applied to `x`, shifted by the noise-level embedding `emb`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, channels_in, H, W]`
    /// - emb: `[batch, E]`, `E` the embedding width
    /// - output: `[batch, channels_out, H, W]`
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = self.block1.forward(x.clone());
        let dims = h.dims();
        let shift = self
            .noise
            .forward(emb)
            .reshape([dims[0], dims[1], 1, 1])
            .expand(dims);
        let h = self.block2.forward(h + shift);
        let skip = match &self.skip {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + skip
    }
}

/// Single-head self-attention over all pixels, with a residual connection (SR3's `SelfAttention`).
#[derive(Module, Debug)]
struct SelfAttention {
    norm: GroupNorm,
    qkv: Conv2d,
    out: Conv2d,
}

impl SelfAttention {
    fn new(channels: usize, groups: usize, device: &Device) -> Self {
        SelfAttention {
            norm: GroupNormConfig::new(groups, channels).init(device),
            qkv: conv(channels, 3 * channels, 1, 1, device),
            out: conv(channels, channels, 1, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let qkv = self
            .qkv
            .forward(self.norm.forward(x.clone()))
            .reshape([n, 3 * c, h * w]);
        let q = qkv.clone().narrow(1, 0, c);
        let k = qkv.clone().narrow(1, c, c);
        let v = qkv.narrow(1, 2 * c, c);
        // [n, hw, hw]: row p holds the weights pixel p gives every pixel.
        let weights = softmax(q.swap_dims(1, 2).matmul(k).div_scalar((c as f64).sqrt()), 2);
        let attended = v.matmul(weights.swap_dims(1, 2)).reshape([n, c, h, w]);
        x + self.out.forward(attended)
    }
}

/// One resolution of the down path.
#[derive(Module, Debug)]
struct DownLevel {
    blocks: Vec<ResnetBlock>,
    downsample: Option<Conv2d>,
}

/// One resolution of the up path.
#[derive(Module, Debug)]
struct UpLevel {
    blocks: Vec<ResnetBlock>,
    upsample: Option<Conv2d>,
}

#[derive(Module, Debug)]
pub struct UNet {
    embed_in: Linear,
    embed_out: Linear,
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid1: ResnetBlock,
    attention: Option<SelfAttention>,
    mid2: ResnetBlock,
    up: Vec<UpLevel>,
    out: NormActConv,
    inner_channels: usize,
}

impl UNetConfig {
    pub fn init(&self, device: &Device) -> UNet {
        let c = self.inner_channels;
        assert!(
            c > 0 && c.is_multiple_of(2),
            "inner_channels must be even, got {c}"
        );
        assert!(
            !self.channel_mults.is_empty(),
            "the U-Net needs at least one level"
        );
        assert!(
            c.is_multiple_of(self.norm_groups),
            "norm_groups ({}) must divide inner_channels ({c})",
            self.norm_groups
        );
        let levels = self.channel_mults.len();
        let mut skips = vec![c];
        let mut width = c;
        let mut down = Vec::with_capacity(levels);
        for (level, mult) in self.channel_mults.iter().enumerate() {
            let out = c * mult;
            let blocks = (0..self.res_blocks)
                .map(|_| {
                    let block = ResnetBlock::new(width, out, c, self, device);
                    width = out;
                    skips.push(width);
                    block
                })
                .collect();
            let downsample = (level + 1 < levels).then(|| {
                skips.push(width);
                conv_stride2(width, device)
            });
            down.push(DownLevel { blocks, downsample });
        }
        let mid1 = ResnetBlock::new(width, width, c, self, device);
        let attention = self
            .attention
            .then(|| SelfAttention::new(width, self.norm_groups, device));
        let mid2 = ResnetBlock::new(width, width, c, self, device);
        let mut up = Vec::with_capacity(levels);
        for (level, mult) in self.channel_mults.iter().enumerate().rev() {
            let out = c * mult;
            let blocks = (0..=self.res_blocks)
                .map(|_| {
                    let skip = skips.pop().expect("one skip per up block");
                    let block = ResnetBlock::new(width + skip, out, c, self, device);
                    width = out;
                    block
                })
                .collect();
            let upsample = (level > 0).then(|| conv(width, width, 3, 1, device));
            up.push(UpLevel { blocks, upsample });
        }
        debug_assert!(skips.is_empty());
        UNet {
            embed_in: LinearConfig::new(c, 4 * c).init(device),
            embed_out: LinearConfig::new(4 * c, c).init(device),
            conv_in: conv(self.in_channels, c, 3, 1, device),
            down,
            mid1,
            attention,
            mid2,
            up,
            out: NormActConv::new(width, self.out_channels, self.norm_groups, 0.0, device),
            inner_channels: c,
        }
    }
}

impl UNet {
    /// The predicted noise for `x` (condition and noisy signal, concatenated) at the noise levels
    /// `gamma`.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, in_channels, H, W]`, H and W multiples of `2^(levels - 1)`
    /// - gamma: `[batch]`
    /// - output: `[batch, out_channels, H, W]`
    pub fn forward(&self, x: Tensor<4>, gamma: Tensor<1>) -> Tensor<4> {
        let [n, _, h, w] = x.dims();
        let multiple = 1 << (self.down.len() - 1);
        assert!(
            h.is_multiple_of(multiple) && w.is_multiple_of(multiple),
            "the U-Net needs sides that are multiples of {multiple}, got {h}x{w}"
        );
        assert_eq!(gamma.dims()[0], n, "one noise level per batch item");
        let emb = self
            .embed_out
            .forward(silu(self.embed_in.forward(self.encode(gamma))));

        let mut x = direct_conv::forward(&self.conv_in, x);
        let mut skips = vec![x.clone()];
        for level in &self.down {
            for block in &level.blocks {
                x = block.forward(x, emb.clone());
                skips.push(x.clone());
            }
            if let Some(downsample) = &level.downsample {
                x = downsample.forward(x);
                skips.push(x.clone());
            }
        }
        x = self.mid1.forward(x, emb.clone());
        if let Some(attention) = &self.attention {
            x = attention.forward(x);
        }
        x = self.mid2.forward(x, emb.clone());
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per up block");
                x = block.forward(Tensor::cat(vec![x, skip], 1), emb.clone());
            }
            if let Some(upsample) = &level.upsample {
                x = direct_conv::forward(upsample, nearest_x2(x));
            }
        }
        self.out.forward(x)
    }

    /// SR3's `PositionalEncoding`: `[N] -> [N, C]`, `[sin(g f_k), cos(g f_k)]` with
    /// `f_k = 10000^(-k/(C/2))`, `k < C/2`.
    fn encode(&self, gamma: Tensor<1>) -> Tensor<2> {
        let half = self.inner_channels / 2;
        let n = gamma.dims()[0];
        let freqs: Vec<f32> = (0..half)
            .map(|k| (-(10_000f64.ln()) * k as f64 / half as f64).exp() as f32)
            .collect();
        let freqs = Tensor::<2>::from_data(TensorData::new(freqs, [1, half]), &gamma.device());
        let phase = gamma.reshape([n, 1]).expand([n, half]) * freqs.expand([n, half]);
        Tensor::cat(vec![phase.clone().sin(), phase.cos()], 1)
    }
}

/// Nearest-neighbour x2 (each pixel becomes a 2x2 block), as reshapes so every backend agrees.
fn nearest_x2(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([n, c, 2 * h, 2 * w])
}

/// `k x k` convolution with "same" padding (burn's default, PyTorch-like initialisation).
fn conv(
    channels_in: usize,
    channels_out: usize,
    k: usize,
    stride: usize,
    device: &Device,
) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([channels_in, channels_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(device)
}

/// The stride-2 3x3 convolution between levels (halves even sides exactly).
fn conv_stride2(channels: usize, device: &Device) -> Conv2d {
    conv(channels, channels, 3, 2, device)
}
