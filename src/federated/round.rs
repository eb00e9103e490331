//! One round of the protocol on a client: size the local work from the round config, train,
//! take the delta, clip it to the round's bound, encode the update body. The HTTP calls around
//! it belong to the caller (`websr fl-client` natively, `fetch` in the browser).

use crate::error::{Result, WebSrError};
use crate::federated::local::{LocalConfig, LocalTrainer};
use crate::federated::update::ModelDelta;
use crate::federated::ClientData;
use crate::weights::sha256_hex;
use burn::tensor::Device;
use std::future::Future;
use websr_federated::protocol::{ClientFloor, RoundConfig};

/// What the client itself decides, whatever the server asks.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// HR patch side of the training pairs.
    pub patch: usize,
    /// The most local steps this device will run in a round (its compute budget).
    pub max_steps: usize,
    pub seed: u64,
}

/// The local work of one round.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundPlan {
    pub local: LocalConfig,
    /// Examples reported to the server: the distinct patches the steps could have seen.
    pub num_examples: u64,
}

/// `local_epochs` passes over the client's patches (capped at `max_examples`) in batches of
/// `batch_size`, at most `opts.max_steps` steps, within the client's floor
/// ([`ClientFloor::DEFAULT`]: batches of at least 8, at least 20 steps unless the participant's
/// budget is lower).
pub fn plan(round: &RoundConfig, data: &ClientData, opts: &ClientOptions) -> Result<RoundPlan> {
    let bad = |what: String| {
        Err(WebSrError::Invalid(format!(
            "the server's round config: {what}"
        )))
    };
    if !(round.client_lr.is_finite() && round.client_lr > 0.0) {
        return bad(format!(
            "client_lr {} is not a positive number",
            round.client_lr
        ));
    }
    if !(round.prox_mu.is_finite() && round.prox_mu >= 0.0) {
        return bad(format!("prox_mu {} is not a number >= 0", round.prox_mu));
    }
    if round.batch_size == 0 || round.local_epochs == 0 || round.max_examples == 0 {
        return bad("batch_size, local_epochs and max_examples must be at least 1".into());
    }
    if let Some(c) = round.clip_norm {
        if !(c.is_finite() && c > 0.0) {
            return bad(format!("clip_norm {c} is not a positive number"));
        }
    }
    ClientFloor::DEFAULT
        .check(round)
        .map_err(|e| WebSrError::Invalid(format!("the server's round config: {e}")))?;
    let held = data.num_examples(opts.patch).min(round.max_examples);
    let batch = round.batch_size as u64;
    let wanted = (u64::from(round.local_epochs) * held).div_ceil(batch);
    let steps = ClientFloor::DEFAULT.steps(wanted, opts.max_steps);
    Ok(RoundPlan {
        local: LocalConfig {
            steps: steps as usize,
            batch: batch as usize,
            patch: opts.patch,
            lr: round.client_lr,
            prox_mu: round.prox_mu,
            // Another round, another set of batches.
            seed: opts.seed ^ round.round.wrapping_mul(0x2545_F491_4F6C_DD1D),
        },
        num_examples: (steps * batch).min(held).max(1),
    })
}

/// What a round produced, and what the page shows the participant about it.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    /// The `POST /v1/update` body: deltas and metadata only, never images.
    pub body: Vec<u8>,
    pub base_version: u64,
    pub num_examples: u64,
    pub steps: usize,
    pub mean_loss: f64,
    /// L2 norm of the delta before clipping, and of the delta sent.
    pub norm: f64,
    pub sent_norm: f64,
    /// The bound it was clipped to: the round's, or the client's own if lower or the round
    /// asked for none ([`ClientFloor::clip_bound`]).
    pub clip_bound: f64,
}

/// Trains `global` (the bytes of `GET /v1/model`) on `data` as the round asks and returns the
/// update. `after_step(step, steps, loss)` runs after every step (progress; yielding to the
/// event loop in the browser) and cancels the round by returning `false`.
pub async fn run_round_async<F, Fut>(
    global: &[u8],
    round: &RoundConfig,
    data: &ClientData,
    opts: &ClientOptions,
    device: &Device,
    after_step: F,
) -> Result<RoundOutcome>
where
    F: FnMut(usize, usize, f64) -> Fut,
    Fut: Future<Output = bool>,
{
    run_round_with_delta_async(global, round, data, opts, device, after_step)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`run_round_async`], also returning the clipped delta it encoded (one flat vector per
/// tensor, layout order): what a secure-aggregation round encodes and masks instead of
/// sending the body.
pub async fn run_round_with_delta_async<F, Fut>(
    global: &[u8],
    round: &RoundConfig,
    data: &ClientData,
    opts: &ClientOptions,
    device: &Device,
    mut after_step: F,
) -> Result<(RoundOutcome, Vec<Vec<f32>>)>
where
    F: FnMut(usize, usize, f64) -> Fut,
    Fut: Future<Output = bool>,
{
    let sha = sha256_hex(global);
    if sha != round.model_sha256 {
        return Err(WebSrError::Weights(format!(
            "the downloaded model has SHA-256 {sha}, the round announced {}",
            round.model_sha256
        )));
    }
    let plan = plan(round, data, opts)?;
    let steps = plan.local.steps;
    let mut trainer = LocalTrainer::new(global, plan.local, device)?;
    for step in 1..=steps {
        let loss = trainer.step_async(data).await?;
        if !loss.is_finite() {
            return Err(WebSrError::Invalid(format!(
                "local training diverged (loss {loss} at step {step}); nothing is sent"
            )));
        }
        if !after_step(step, steps, loss).await {
            return Err(WebSrError::Cancelled);
        }
    }
    let mut delta = ModelDelta::between(global, &trainer.trained_bytes_async().await?)?;
    // Clipped even when the round asks for no bound (the client's own floor).
    let clip_bound = ClientFloor::DEFAULT.clip_bound(round);
    let norm = delta.clip(clip_bound);
    let mean_loss = trainer.mean_loss().unwrap_or(f64::NAN);
    let body = delta.encode(round.global_version, plan.num_examples, Some(mean_loss))?;
    let outcome = RoundOutcome {
        body,
        base_version: round.global_version,
        num_examples: plan.num_examples,
        steps,
        mean_loss,
        norm,
        sent_norm: delta.norm(),
        clip_bound,
    };
    Ok((outcome, delta.tensors))
}
