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
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
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

/// DWSR's first layer; the variant also says what the network reads.
// One per model: the size difference between the variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
enum Head {
    /// Conv + ReLU on the 12 Haar sub-bands of the upscaled image (DWSR).
    Conv(Conv2d),
    /// A DWA module on the sub-bands (DWSR+DWA).
    Dwa(Dwa),
    /// A stride-2 DWA on the upscaled RGB image itself, without the input DWT (DWA-Direct).
    Direct(Dwa),
}

impl Head {
    /// Features of the bicubic-upscaled image `up` at half its resolution.
    ///
    /// # Shapes
    ///
    /// - up: `[batch, 3, H, W]` (H and W even)
    /// - output: `[batch, features, H/2, W/2]`
    fn forward(&self, up: Tensor<4>) -> Tensor<4> {
        match self {
            Head::Conv(conv) => relu(conv.forward(dwt(up))),
            Head::Dwa(dwa) => dwa.forward(dwt(up)),
            Head::Direct(dwa) => dwa.forward(up),
        }
    }

    /// The name its tensors are saved under (`head_conv.weight`, `head_dwa.v1.weight`, ...):
    /// the names of the two optional fields DWSR had before this enum, which the shipped
    /// weight files use.
    fn saved_name(&self) -> &'static str {
        match self {
            Head::Conv(_) => "head_conv",
            Head::Dwa(_) | Head::Direct(_) => "head_dwa",
        }
    }

    /// Visits the inner module as the field [`Head::saved_name`], with no variant in the path.
    fn visit_saved<V: ModuleVisitor>(&self, visitor: &mut V) {
        let name = self.saved_name();
        match self {
            Head::Conv(conv) => visit_field(visitor, name, conv),
            Head::Dwa(dwa) | Head::Direct(dwa) => visit_field(visitor, name, dwa),
        }
    }

    /// Maps the inner module as the field [`Head::saved_name`], with no variant in the path.
    fn map_saved<M: ModuleMapper>(self, mapper: &mut M) -> Head {
        let name = self.saved_name();
        match self {
            Head::Conv(conv) => Head::Conv(map_field(mapper, name, conv)),
            Head::Dwa(dwa) => Head::Dwa(map_field(mapper, name, dwa)),
            Head::Direct(dwa) => Head::Direct(map_field(mapper, name, dwa)),
        }
    }
}

/// DWSR and its DWA variants. Its `Module` is written out rather than derived only to save the
/// head under `Head::saved_name` (a derived one would save `head.weight`, or with the
/// variant, `head.Conv.weight`); it is what the derive would make otherwise.
#[derive(Clone, Debug)]
pub struct Dwsr {
    head: Head,
    body: Vec<Conv2d>,
    tail: Conv2d,
    scale: usize,
}

impl DwsrConfig {
    pub fn init(&self, device: &Device) -> Dwsr {
        let f = self.features;
        let head = if self.direct {
            Head::Direct(DwaConfig::new(3, f, f / 2).with_stride(2).init(device))
        } else if self.dwa_head {
            Head::Dwa(DwaConfig::new(12, f, f / 2).init(device))
        } else {
            Head::Conv(conv3(12, f, false, device))
        };
        Dwsr {
            head,
            body: (0..self.body_layers)
                .map(|_| conv3(f, f, false, device))
                .collect(),
            tail: conv3_zero(f, 12, false, device),
            scale: self.scale,
        }
    }
}

impl Dwsr {
    /// The low-resolution image `lr`, in `[0, 1]`, upscaled.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn forward(&self, lr: Tensor<4>) -> Tensor<4> {
        let up = bicubic_upscale(lr, self.scale);
        let mut x = self.head.forward(up.clone());
        for conv in &self.body {
            x = relu(conv.forward(x));
        }
        up + idwt(self.tail.forward(x))
    }

    /// The same function with `body_layers` body convolutions (Net2DeeperNet: `layers::deepen_body`).
    pub fn deepened(self, body_layers: usize) -> Dwsr {
        Dwsr {
            body: deepen_body(self.body, body_layers),
            ..self
        }
    }

    /// How far (in output pixels) one output pixel can see: each 3x3 conv at half resolution
    /// adds 2 output pixels per side, plus the bicubic kernel.
    pub fn receptive_radius_lr(&self) -> usize {
        let dwa_head = !matches!(self.head, Head::Conv(_));
        let convs = self.body.len() + 2 + usize::from(dwa_head);
        (2 * convs).div_ceil(self.scale) + 3
    }
}

// Dwsr's hand-written `Module` (see `Dwsr`'s doc for why).

/// The container type a derived `Module` reports for `Dwsr`'s fields.
const CONTAINER: &str = "Struct:Dwsr";

/// Visits `field` as `Dwsr`'s field `name`, as a derived `Module` does.
fn visit_field<M: Module, V: ModuleVisitor>(visitor: &mut V, name: &str, field: &M) {
    visitor.enter_module(name, CONTAINER);
    field.visit(visitor);
    visitor.exit_module(name, CONTAINER);
}

/// Maps `field` as `Dwsr`'s field `name`, as a derived `Module` does.
fn map_field<M: Module, P: ModuleMapper>(mapper: &mut P, name: &str, field: M) -> M {
    mapper.enter_module(name, CONTAINER);
    let field = field.map(mapper);
    mapper.exit_module(name, CONTAINER);
    field
}

impl Module for Dwsr {
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.head.visit_saved(visitor);
        visit_field(visitor, "body", &self.body);
        visit_field(visitor, "tail", &self.tail);
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Dwsr {
            head: self.head.map_saved(mapper),
            body: map_field(mapper, "body", self.body),
            tail: map_field(mapper, "tail", self.tail),
            scale: self.scale,
        }
    }

    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.head.collect_devices(devices);
        let devices = self.body.collect_devices(devices);
        self.tail.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Dwsr {
            head: self.head.fork(device),
            body: self.body.fork(device),
            tail: self.tail.fork(device),
            scale: self.scale,
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Dwsr {
            head: self.head.to_device(device),
            body: self.body.to_device(device),
            tail: self.tail.to_device(device),
            scale: self.scale,
        }
    }

    fn train(self) -> Self {
        Dwsr {
            head: self.head.train(),
            body: self.body.train(),
            tail: self.tail.train(),
            scale: self.scale,
        }
    }

    fn valid(&self) -> Self {
        Dwsr {
            head: self.head.valid(),
            body: self.body.valid(),
            tail: self.tail.valid(),
            scale: self.scale,
        }
    }

    fn materialize(self) -> Self {
        Dwsr {
            head: self.head.materialize(),
            body: self.body.materialize(),
            tail: self.tail.materialize(),
            scale: self.scale,
        }
    }
}

impl ModuleDisplayDefault for Dwsr {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .set_top_level_type("Dwsr")
            .add(self.head.saved_name(), &self.head)
            .add("body", &self.body)
            .add("tail", &self.tail)
            .add_debug_attribute("scale", &self.scale)
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for Dwsr {}

impl std::fmt::Display for Dwsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.format(Default::default()))
    }
}
