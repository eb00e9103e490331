//! FedBuff in `websr fl-sim`: buffered asynchronous aggregation against synchronous rounds at
//! equal simulated time. Clients differ in speed (a seeded time per local step); a synchronous
//! round waits for its slowest picked client, while under FedBuff `--per-round` clients train at
//! every moment, each from the global version current when it started, and every K arrivals
//! make a new version. An arrival's delta is damped by its staleness exactly as the aggregator's
//! `--buffered` mode does (`websr_federated::strategy::staleness`), then FedAvg merges the
//! buffer with a server step of 1.

use crate::fl_sim::{local_seed, local_update, strategy_config, FlSimArgs};
use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use websr::burn::tensor::Device;
use websr::federated::update::rewrite;
use websr::federated::ClientData;
use websr_federated::strategy::staleness::scale_for_staleness;
use websr_federated::strategy::{OptState, Update};

/// Each client's simulated time per local step, log-uniform in `[1, spread]`, seeded.
pub fn client_step_times(clients: usize, spread: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0F5B_EED5);
    (0..clients)
        .map(|_| spread.powf(rng.random::<f64>()))
        .collect()
}

/// A FedBuff run's result.
pub struct FedBuffRun {
    pub weights: Vec<u8>,
    /// Mean client loss of the updates in each version.
    pub losses: Vec<f64>,
    /// Updates that arrived within the time budget.
    pub updates: usize,
    /// Global versions made.
    pub versions: usize,
    pub mean_staleness: f64,
    /// Updates that arrived from each client: fast clients arrive more often.
    pub per_client: Vec<usize>,
}

/// A client training from version `base` since `start`.
struct Running {
    client: usize,
    base: usize,
    launch: usize,
    finish: f64,
}

/// FedBuff with buffer `k` for `budget` simulated time units.
pub fn fedbuff(
    args: &FlSimArgs,
    k: usize,
    clients: &[ClientData],
    init: &[u8],
    step_times: &[f64],
    budget: f64,
    device: &Device,
) -> Result<FedBuffRun> {
    let strategy = strategy_config("fedavg", args)?.build();
    let mut versions = vec![init.to_vec()];
    let mut opt = OptState::default();
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x00FE_DB0F);
    let duration = |c: usize| args.local_steps as f64 * step_times[c];
    let concurrent = args.per_round.min(clients.len());
    let mut launches = 0;
    let mut running: Vec<Running> = sample(&mut rng, clients.len(), concurrent)
        .into_iter()
        .map(|client| {
            launches += 1;
            Running {
                client,
                base: 0,
                launch: launches - 1,
                finish: duration(client),
            }
        })
        .collect();
    let pb = crate::bar(0, "fedbuff {spinner} {pos} local steps, loss {prefix}");
    let (mut buffer, mut buffer_loss) = (Vec::<Update>::with_capacity(k), 0.0);
    let (mut losses, mut updates, mut staleness_sum) = (Vec::new(), 0, 0u64);
    let mut per_client = vec![0; clients.len()];
    loop {
        let next = (0..running.len())
            .min_by(|&a, &b| running[a].finish.total_cmp(&running[b].finish))
            .expect("clients are running");
        if running[next].finish > budget {
            break;
        }
        let done = running.swap_remove(next);
        // Training is deterministic given the base and the seed, so it runs at arrival: an
        // update that would arrive after the budget is never computed.
        let seed = local_seed(args.seed, done.launch, done.client);
        let (mut update, loss) = local_update(
            args,
            0.0,
            &versions[done.base],
            &clients[done.client],
            seed,
            device,
            &pb,
        )?;
        let current = versions.len() - 1;
        let staleness = (current - done.base) as u64;
        scale_for_staleness(&mut update.tensors, staleness);
        staleness_sum += staleness;
        updates += 1;
        per_client[done.client] += 1;
        buffer.push(update);
        buffer_loss += loss;
        if buffer.len() == k {
            let merged = strategy
                .aggregate(&buffer)
                .map_err(|e| anyhow::anyhow!("version {}: {e}", versions.len()))?;
            let global = rewrite(&versions[current], |_, values| {
                strategy.apply(values, &merged, &mut opt)
            })?;
            versions.push(global);
            losses.push(buffer_loss / k as f64);
            (buffer_loss, buffer) = (0.0, Vec::with_capacity(k));
        }
        // The freed slot goes to a client not training now, from the newest version.
        let idle: Vec<usize> = (0..clients.len())
            .filter(|c| !running.iter().any(|r| r.client == *c))
            .collect();
        let client = idle[rng.random_range(0..idle.len())];
        running.push(Running {
            client,
            base: versions.len() - 1,
            launch: launches,
            finish: done.finish + duration(client),
        });
        launches += 1;
    }
    pb.finish_and_clear();
    Ok(FedBuffRun {
        weights: versions.pop().expect("the initial version"),
        versions: losses.len(),
        losses,
        updates,
        mean_staleness: staleness_sum as f64 / updates.max(1) as f64,
        per_client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_are_seeded_and_within_the_spread() {
        let a = client_step_times(16, 4.0, 3);
        assert_eq!(a, client_step_times(16, 4.0, 3));
        assert_ne!(a, client_step_times(16, 4.0, 4));
        assert!(a.iter().all(|t| (1.0..=4.0).contains(t)));
        assert!(client_step_times(4, 1.0, 3).iter().all(|t| *t == 1.0));
    }
}
