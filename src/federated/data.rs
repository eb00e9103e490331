//! A federated client's training data: its images and the degradation each one carries.

use crate::degrade::{degrade, DegradationSampler};
use crate::error::{Result, WebSrError};
use crate::train::data::{Batch, TrainingSet};
use rand::Rng;

pub struct ClientData {
    pub images: TrainingSet,
    /// How LR inputs are made from image `i`'s patches.
    samplers: Vec<DegradationSampler>,
}

impl ClientData {
    /// Every image degraded the same way (a real participant, `websr fl-client`).
    pub fn new(images: TrainingSet, sampler: DegradationSampler) -> Self {
        let samplers = vec![sampler; images.len()];
        Self { images, samplers }
    }

    /// One sampler per image (simulated clients whose images carry assigned base kinds).
    pub fn with_samplers(images: TrainingSet, samplers: Vec<DegradationSampler>) -> Result<Self> {
        if samplers.len() != images.len() {
            return Err(WebSrError::Invalid(format!(
                "{} degradations for {} images",
                samplers.len(),
                images.len()
            )));
        }
        Ok(Self { images, samplers })
    }

    /// Adds an image degraded with `sampler`.
    pub fn push(&mut self, image: &crate::image::Planar, sampler: DegradationSampler) {
        self.images.push(image);
        self.samplers.push(sampler);
    }

    pub fn samplers(&self) -> &[DegradationSampler] {
        &self.samplers
    }

    /// Training examples this client holds: disjoint HR patches of side `patch` (at least 1).
    pub fn num_examples(&self, patch: usize) -> u64 {
        self.images.num_patches(patch).max(1) as u64
    }

    /// `n` random LR/HR pairs, each LR made with its image's degradation at a random strength.
    pub fn batch<R: Rng>(
        &self,
        rng: &mut R,
        n: usize,
        patch: usize,
        scale: usize,
    ) -> Result<Batch> {
        let samplers = &self.samplers;
        self.images
            .batch_with(rng, n, patch, scale, &mut |i, hr, rng| {
                let d = samplers[i].sample(rng);
                Ok(degrade(hr, scale, &d, rng)?.1)
            })
    }
}
