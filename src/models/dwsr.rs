//! DWSR (Guo et al., CVPRW 2017), in the RGB form the DWA/DiWa authors use (methods.md §1):
//! the 12 Haar sub-bands of the bicubic-upscaled image go through
//! `Conv(12->64) ReLU, 10 x [Conv(64->64) ReLU], Conv(64->12)`, all 3x3 without bias, and the
//! result is added to the input sub-bands before the inverse DWT.
//!
//! With `dwa_head` the first convolution is replaced by a [`Dwa`] module (DWSR+DWA);
//! with `direct` the network reads the RGB image itself through a stride-2 DWA and skips the
//! input DWT (DWA-Direct). Since the IDWT is linear, `IDWT(DWT(up) + r) = up + IDWT(r)`, which is
//! how the residual is added in every variant.

use super::dwa::{Dwa, DwaConfig};
use super::layers::{conv3, conv3_zero, deepen_body};
use crate::upsample::bicubic_upscale;
use crate::wavelet::{dwt, idwt};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{activation::relu, Device, Tensor};

#[derive(Config, Debug)]
pub struct DwsrConfig {
    pub scale: usize,
    /// Width of the body (64 in the paper).
    #[config(default = 64)]
    pub features: usize,
    /// Number of 64->64 convolutions between head and tail (10 in the paper).
    #[config(default = 10)]
    pub body_layers: usize,
    /// Replace the first convolution with a DWA module (DWSR+DWA).
    #[config(default = false)]
    pub dwa_head: bool,
    /// DWA-Direct: a stride-2 DWA on the RGB image replaces the input DWT and first conv.
    #[config(default = false)]
    pub direct: bool,
}

#[derive(Module, Debug)]
pub struct Dwsr {
    head_conv: Option<Conv2d>,
    head_dwa: Option<Dwa>,
    body: Vec<Conv2d>,
    tail: Conv2d,
    scale: usize,
    direct: bool,
}

impl DwsrConfig {
    pub fn init(&self, device: &Device) -> Dwsr {
        let f = self.features;
        let (head_conv, head_dwa) = if self.direct {
            let dwa = DwaConfig::new(3, f, f / 2).with_stride(2).init(device);
            (None, Some(dwa))
        } else if self.dwa_head {
            (None, Some(DwaConfig::new(12, f, f / 2).init(device)))
        } else {
            (Some(conv3(12, f, false, device)), None)
        };
        Dwsr {
            head_conv,
            head_dwa,
            body: (0..self.body_layers)
                .map(|_| conv3(f, f, false, device))
                .collect(),
            tail: conv3_zero(f, 12, false, device),
            scale: self.scale,
            direct: self.direct,
        }
    }
}

impl Dwsr {
    /// `[N, 3, h, w]` low-resolution image in `[0, 1]` -> `[N, 3, h*scale, w*scale]`.
    pub fn forward(&self, lr: Tensor<4>) -> Tensor<4> {
        let up = bicubic_upscale(lr, self.scale);
        let input = if self.direct {
            up.clone()
        } else {
            dwt(up.clone())
        };
        let mut x = match (&self.head_conv, &self.head_dwa) {
            (Some(conv), _) => relu(conv.forward(input)),
            (None, Some(dwa)) => dwa.forward(input),
            (None, None) => unreachable!("DWSR has a head"),
        };
        for conv in &self.body {
            x = relu(conv.forward(x));
        }
        up + idwt(self.tail.forward(x))
    }

    /// The same function with `body_layers` body convolutions ([`deepen_body`]).
    pub fn deepened(self, body_layers: usize) -> Dwsr {
        Dwsr {
            body: deepen_body(self.body, body_layers),
            ..self
        }
    }

    /// How far (in output pixels) one output pixel can see: each 3x3 conv at half resolution
    /// adds 2 output pixels per side, plus the bicubic kernel.
    pub fn receptive_radius_lr(&self) -> usize {
        let convs = self.body.len() + 2 + usize::from(self.head_dwa.is_some());
        (2 * convs).div_ceil(self.scale) + 3
    }
}
