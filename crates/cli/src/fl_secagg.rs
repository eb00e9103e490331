//! `websr fl-client`'s part in a secure-aggregation round (the round config announces
//! `secure_aggregation`): instead of `POST /v1/update`, the trained and clipped delta is
//! (optionally noised,) encoded in fixed point, masked and sent through the aggregator's
//! `/v1/secagg/...` phases, so that the server only ever sees the sum of the round's updates.
//! The protocol is `websr_federated::secagg`; this module only carries its messages.

use crate::fl_client::{server_message, Client};
use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::{Duration, Instant};
use websr_federated::protocol::{
    encode_masked_input, ClientId, RoundConfig, SecAggAck, SecAggResult,
};
use websr_federated::secagg::{self, KeyDirectory, RoutedShares, UnmaskRequest};

/// A ChaCha20 generator seeded from the operating system: the client's key pairs, self-mask
/// seed, Shamir coefficients and noise all come from it.
fn os_rng() -> Result<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// POSTs one message; the session's answer.
fn post(client: &Client, path: &str, body: &[u8]) -> Result<SecAggAck> {
    let (status, answer) = client.send("POST", path, Some(body))?;
    if status != 200 {
        bail!("POST {path}: {status} {}", server_message(&answer));
    }
    serde_json::from_slice(&answer).with_context(|| format!("POST {path}: unexpected answer"))
}

/// GETs the broadcast of a closed phase, asking again while the phase is open (425) until
/// `deadline`.
fn wait_for<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    deadline: Instant,
) -> Result<T> {
    loop {
        let (status, body) = client.send("GET", path, None)?;
        match status {
            200 => {
                return serde_json::from_slice(&body)
                    .with_context(|| format!("GET {path}: unexpected answer"))
            }
            425 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            425 => bail!("GET {path}: the phase did not close in time"),
            _ => bail!("GET {path}: {status} {}", server_message(&body)),
        }
    }
}

/// Sends the clipped `delta` (trained from `round.global_version`) through the SecAgg phases
/// of the open session. Returns how the session ended: the version it produced and the
/// survivors. Any failure (the session failed, this client was left out) is an error: the
/// caller goes back to `GET /v1/round`.
pub fn contribute(
    client: &Client,
    round: &RoundConfig,
    id: ClientId,
    delta: Vec<Vec<f32>>,
) -> Result<SecAggResult> {
    // The session may have started over while we trained: take the current one.
    let now: RoundConfig = client.json("GET", "/v1/round")?;
    if now.global_version != round.global_version {
        bail!(
            "the global version moved from {} to {} during training",
            round.global_version,
            now.global_version
        );
    }
    let sa = now.joinable_secagg().map_err(|e| anyhow!(e))?;
    let session = sa.config.round;
    let mut rng = os_rng()?;
    let mut me = secagg::Participant::start(sa, id, delta, &mut rng)
        .context("preparing the update for secure aggregation")?;
    let phase = Duration::from_secs_f64(sa.phase_secs.max(1.0));
    let round_left = Duration::from_millis(
        now.deadline_unix_ms
            .saturating_sub(unix_ms())
            .min(24 * 3600 * 1000),
    );
    post(client, "/v1/secagg/keys", &serde_json::to_vec(me.keys())?)?;
    // The keys phase lasts until enough clients have trained (at most the round deadline, which
    // may be extended); each later phase at most `phase_secs`.
    let dir: KeyDirectory = wait_for(
        client,
        &format!("/v1/secagg/keys?session={session}"),
        Instant::now() + round_left + 4 * phase,
    )?;
    let shares = me.share_keys(&dir, &mut rng)?;
    post(client, "/v1/secagg/shares", &serde_json::to_vec(&shares)?)?;
    let routed: RoutedShares = wait_for(
        client,
        &format!("/v1/secagg/shares?session={session}"),
        Instant::now() + 2 * phase,
    )?;
    let masked = me.masked_input(&routed)?;
    post(client, "/v1/secagg/masked", &encode_masked_input(&masked))?;
    drop(masked);
    let request: UnmaskRequest = wait_for(
        client,
        &format!("/v1/secagg/unmask?session={session}"),
        Instant::now() + 2 * phase,
    )?;
    let response = me.unmask(&request)?;
    post(client, "/v1/secagg/unmask", &serde_json::to_vec(&response)?)?;
    wait_for(
        client,
        &format!("/v1/secagg/result?session={session}"),
        Instant::now() + 2 * phase,
    )
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
