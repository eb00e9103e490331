//! The aggregator's state machine: the global model and its version, clients and tokens, the open
//! round (selection, accepted updates, deadline), and round completion. Synchronous and free of
//! HTTP types; `api.rs` calls it from blocking tasks.
//!
//! Round rules: the round on global version `v` selects up to `ceil(target * over_selection)`
//! clients (in the order they ask `GET /v1/round`); it closes as soon as `target` updates are
//! accepted, or at the deadline if at least `min` are (the selected clients that sent nothing are
//! the dropped stragglers). Below `min` at the deadline the round keeps its updates, releases the
//! silent clients' slots and gets a new deadline. Closing aggregates, applies the server step,
//! commits version `v + 1` to disk, and opens the next round. With `--secure-aggregation` the
//! round runs the SecAgg phases instead (`secagg.rs`) and closes through the same commit. With
//! `--buffered K` there is no selection cap and no deadline: updates of any recent version are
//! buffered and every `K` of them close the round through the same commit (`buffered.rs`).

use crate::config::ServerConfig;
use crate::dp::{self, Accountant};
pub use crate::error::Error;
pub use crate::protocol::*;
use crate::store::Store;
use crate::strategy::{capped_weights, OptState, Strategy, StrategyError, Update};
use crate::tensors::{self, Layout, META_GLOBAL_VERSION};
use crate::update_log::UpdateLog;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod buffered;
mod persist;
mod running_sum;
mod secagg;
pub use buffered::staleness_weight;
use persist::encode_opt;
use running_sum::RunningSum;

/// What a round's record needs from its updates, taken before they go to the strategy.
struct RoundInputs {
    clients: Vec<ClientId>,
    claimed: Vec<u64>,
    losses: Vec<f64>,
    dp_on: bool,
    /// Secure aggregation: the std of the noise the clients already put in the mean (the server
    /// adds none). `None`: the server adds its own (`--noise-multiplier`).
    distributed_noise_std: Option<f64>,
    /// When the aggregation began (the round record's `aggregation_ms`).
    started: Instant,
}

#[derive(Debug, Clone)]
struct AcceptedUpdate {
    /// The delta, kept where the strategy needs every update; `None` where the round sums its
    /// updates as they arrive ([`Inner::sum`]).
    tensors: Option<Vec<Vec<f32>>>,
    num_examples: u64,
    client_loss: Option<f64>,
}

/// A joined client: its id and when its token was issued (tokens expire `--token-ttl-secs`
/// after that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientEntry {
    id: ClientId,
    issued_ms: u64,
}

#[derive(Debug, Clone)]
struct Inner {
    version: u64,
    global: Vec<Vec<f32>>,
    model_bytes: Arc<Vec<u8>>,
    model_sha256: String,
    opt: OptState,
    /// SHA-256 of a token -> its client. Also in `clients.log` (append-only).
    tokens: HashMap<String, ClientEntry>,
    next_client: ClientId,
    started_ms: u64,
    deadline_ms: u64,
    selected: BTreeSet<ClientId>,
    accepted: BTreeMap<ClientId, AcceptedUpdate>,
    /// The accepted deltas summed with their weights, where the strategy is a weighted mean
    /// (`running_sum.rs`); `None` where it keeps every update.
    sum: Option<RunningSum>,
    /// Updates checked and being written (group commit); they count once durable.
    storing: BTreeSet<ClientId>,
    history: Vec<RoundRecord>,
    accountant: Accountant,
    counters: Counters,
    joins: JoinLimiter,
}

/// A token bucket over `POST /v1/join`: `per_minute` joins a minute, bursts up to that many.
/// Memory only: a restart refills it.
#[derive(Debug, Clone)]
struct JoinLimiter {
    available: f64,
    last_ms: u64,
}

impl JoinLimiter {
    fn full(per_minute: u32, now: u64) -> Self {
        Self {
            available: f64::from(per_minute),
            last_ms: now,
        }
    }

    /// Takes one join if available; otherwise the seconds until one is.
    fn take(&mut self, per_minute: u32, now: u64) -> Result<(), f64> {
        let rate = f64::from(per_minute) / 60_000.0;
        let elapsed = now.saturating_sub(self.last_ms) as f64;
        self.available = (self.available + elapsed * rate).min(f64::from(per_minute));
        self.last_ms = now.max(self.last_ms);
        if self.available >= 1.0 {
            self.available -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.available) / rate / 1000.0).max(0.001))
        }
    }
}

/// The aggregator. Share it as `Arc<Server>`; every method locks internally.
pub struct Server {
    config: ServerConfig,
    strategy: Box<dyn Strategy>,
    store: Store,
    layout: Layout,
    /// The initial model's metadata (format, spec...) without `global_version`.
    metadata: HashMap<String, String>,
    model_bytes_len: usize,
    updates: UpdateLog,
    inner: Mutex<Inner>,
    /// The open secure-aggregation session (memory only; locked after `inner`, never before).
    secagg: Mutex<secagg::SecAggState>,
}

/// The weight an update is summed with as it arrives (`running_sum.rs`): its claim, or 1 with
/// DP noise (whose mean is unweighted).
fn summed_weight(config: &ServerConfig, num_examples: u64) -> f64 {
    if config.noise_multiplier > 0.0 {
        1.0
    } else {
        num_examples as f64
    }
}

/// Adds an accepted delta to the round's `sum` where it has one (and drops it); otherwise
/// returns it to be kept. Accepting an update and resuming a round both go through here.
fn sum_or_keep(
    config: &ServerConfig,
    sum: Option<&mut RunningSum>,
    tensors: Vec<Vec<f32>>,
    num_examples: u64,
) -> Option<Vec<Vec<f32>>> {
    match sum {
        Some(sum) => {
            sum.add(&tensors, summed_weight(config, num_examples));
            None
        }
        None => Some(tensors),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Server {
    /// Opens `--state-dir`: resumes the saved state, or starts version 0 from `--init`.
    pub fn open(config: ServerConfig) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let strategy = config.strategy.build();
        let store = Store::open(&config.state_dir)?;
        let saved = store.read(&store.state_path())?;
        let (server, fresh) = match saved {
            Some(json) => (Self::resume(config, strategy, store, &json)?, false),
            None => (Self::start(config, strategy, store)?, true),
        };
        {
            let mut inner = server.lock();
            if fresh {
                server.persist(&inner)?;
            }
            // A crash may have happened after the last accepted update and before aggregation.
            if inner.accepted.len() >= server.config.close_at() && !server.finished(&inner) {
                server.close_round(&mut inner, now_ms(), server.full_reason())?;
            }
            drop(inner);
        }
        Ok(server)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves `Inner` as it was before the failed call
        // (every mutation is committed last), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encode_model(
        layout: &Layout,
        values: &[Vec<f32>],
        metadata: &HashMap<String, String>,
        version: u64,
    ) -> Result<Vec<u8>, Error> {
        let mut md = metadata.clone();
        md.insert(META_GLOBAL_VERSION.to_string(), version.to_string());
        tensors::serialize(layout, values, &md).map_err(|e| Error::Corrupt(e.to_string()))
    }

    fn finished(&self, inner: &Inner) -> bool {
        self.config.rounds > 0 && inner.version >= self.config.rounds
    }

    fn authenticate(&self, inner: &Inner, token: Option<&str>) -> Result<ClientId, Error> {
        self.authenticate_at(inner, token, now_ms())
    }

    fn authenticate_at(
        &self,
        inner: &Inner,
        token: Option<&str>,
        now: u64,
    ) -> Result<ClientId, Error> {
        let token = token.ok_or(Error::Unauthorized)?;
        let entry = inner
            .tokens
            .get(&tensors::sha256_hex(token.as_bytes()))
            .ok_or(Error::Unauthorized)?;
        if self.expired(entry, now) {
            return Err(Error::TokenExpired);
        }
        Ok(entry.id)
    }

    fn expired(&self, entry: &ClientEntry, now: u64) -> bool {
        now.saturating_sub(entry.issued_ms) as f64 >= self.config.token_ttl_secs * 1000.0
    }

    /// The noise of the round that produces `version`. Seeded (`--seed`): a stream per version,
    /// so a restarted server never reuses a committed round's noise on a different model.
    fn noise_rng(&self, version: u64) -> StdRng {
        match self.config.seed {
            Some(s) => StdRng::seed_from_u64(s ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => StdRng::from_rng(&mut rand::rng()),
        }
    }

    fn deadline_ms(&self, now: u64) -> u64 {
        now + (self.config.round_deadline_secs * 1000.0) as u64
    }

    /// The client a bearer token belongs to.
    pub fn client_id(&self, token: Option<&str>) -> Result<ClientId, Error> {
        self.authenticate(&self.lock(), token)
    }

    /// The validated settings this server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Names and shapes of the model's tensors.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Request body limit: `--max-body-bytes`, or twice the model as served (f32) plus 64 KiB.
    pub fn max_body_bytes(&self) -> usize {
        self.config
            .max_body_bytes
            .unwrap_or(2 * self.model_bytes_len + 64 * 1024)
    }

    /// Origins whose pages may call the API from a browser (`--allow-origin`).
    pub fn allowed_origins(&self) -> &[String] {
        &self.config.allow_origin
    }

    /// Registers a new client and returns its token. One line appended to `clients.log`
    /// (not a rewrite of the state), at most `--max-joins-per-minute`.
    pub fn join(&self) -> Result<Joined, Error> {
        self.join_at(now_ms())
    }

    /// [`Server::join`] at an explicit time (milliseconds since the epoch), for tests.
    pub fn join_at(&self, now: u64) -> Result<Joined, Error> {
        let mut inner = self.lock();
        let per_minute = self.config.max_joins_per_minute;
        if let Err(retry_after_s) = inner.joins.take(per_minute, now) {
            return Err(Error::TooManyJoins { retry_after_s });
        }
        if inner.tokens.len() >= self.config.max_clients {
            // Expired tokens make room (they stay in the log, and are skipped on resume).
            let live: HashMap<String, ClientEntry> = inner
                .tokens
                .iter()
                .filter(|(_, e)| !self.expired(e, now))
                .map(|(h, e)| (h.clone(), *e))
                .collect();
            inner.tokens = live;
            if inner.tokens.len() >= self.config.max_clients {
                return Err(Error::TooManyClients);
            }
        }
        let token = random_token();
        let hash = tensors::sha256_hex(token.as_bytes());
        let entry = ClientEntry {
            id: inner.next_client,
            issued_ms: now,
        };
        self.store.append_client(entry.id, &hash, entry.issued_ms)?;
        inner.tokens.insert(hash, entry);
        inner.next_client += 1;
        inner.counters.joins += 1;
        Ok(Joined {
            client_id: entry.id,
            token,
            expires_unix_ms: now + (self.config.token_ttl_secs * 1000.0) as u64,
        })
    }

    /// The open round's config for this client; selects it if a slot is free.
    pub fn round_config(&self, token: Option<&str>) -> Result<RoundConfig, Error> {
        self.round_config_at(token, now_ms())
    }

    pub fn round_config_at(&self, token: Option<&str>, now: u64) -> Result<RoundConfig, Error> {
        let mut inner = self.lock();
        let client = self.authenticate_at(&inner, token, now)?;
        self.tick_locked(&mut inner, now)?;
        let finished = self.finished(&inner);
        let secagg = self.secagg_view(&mut inner, client, now)?;
        let submitted =
            inner.accepted.contains_key(&client) || secagg.as_ref().is_some_and(|v| v.submitted);
        let selecting = secagg.as_ref().is_none_or(|v| v.selecting);
        let mut selected = inner.selected.contains(&client);
        if self.config.buffered.is_some() {
            // FedBuff: anyone may train, once per version.
            selected = !finished && !submitted;
        } else if !finished
            && !selected
            && selecting
            && inner.selected.len() < self.config.selection_cap()
        {
            inner.selected.insert(client);
            if let Err(e) = self.persist(&inner) {
                inner.selected.remove(&client);
                return Err(e.into());
            }
            selected = true;
        }
        let seconds_left = match self.config.buffered {
            Some(_) => 1.0,
            None => inner.deadline_ms.saturating_sub(now) as f64 / 1000.0,
        };
        Ok(RoundConfig {
            round: inner.version + 1,
            global_version: inner.version,
            model_sha256: inner.model_sha256.clone(),
            selected,
            submitted,
            finished,
            retry_after_s: if selected { 0.0 } else { seconds_left.max(1.0) },
            deadline_unix_ms: inner.deadline_ms,
            min_clients: self
                .config
                .buffered
                .map_or(self.config.min_clients, |b| b.k),
            target_clients: self.config.close_at(),
            accepted: inner.accepted.len(),
            strategy: self.strategy.name().to_string(),
            prox_mu: self.strategy.client_config().prox_mu,
            clip_norm: self.config.clip_norm,
            local_epochs: self.config.local_epochs,
            client_lr: self.config.client_lr,
            batch_size: self.config.batch_size,
            max_examples: self.config.max_examples,
            secure_aggregation: secagg.map(|v| v.info),
        })
    }

    /// The current global model: (version, SHA-256, safetensors bytes).
    pub fn model(&self, token: Option<&str>) -> Result<(u64, String, Arc<Vec<u8>>), Error> {
        let inner = self.lock();
        self.authenticate(&inner, token)?;
        Ok((
            inner.version,
            inner.model_sha256.clone(),
            inner.model_bytes.clone(),
        ))
    }

    /// Validates and accepts one update body (see the wire protocol in the crate docs).
    /// A refused update changes nothing but the rejection counter.
    pub fn submit(&self, token: Option<&str>, body: &[u8]) -> Result<Accepted, Error> {
        let r = self.submit_inner(token, body);
        if let Err(e) = &r {
            self.count_rejection(e);
        }
        r
    }

    /// Counts a refused update under its reason in `/v1/metrics` (memory only: a refusal
    /// writes nothing to disk).
    pub fn count_rejection(&self, e: &Error) {
        *self
            .lock()
            .counters
            .updates_rejected
            .entry(e.code().to_string())
            .or_default() += 1;
    }

    fn submit_inner(&self, token: Option<&str>, body: &[u8]) -> Result<Accepted, Error> {
        self.authenticate(&self.lock(), token)?;
        if self.config.secure_aggregation.is_some() {
            return Err(Error::SecAggOnly);
        }
        // Parse outside the lock: the layout never changes.
        let u = tensors::parse_update(body, &self.layout)?;
        if u.num_examples < 1 || u.num_examples > self.config.max_examples {
            return Err(Error::NumExamples {
                got: u.num_examples,
                max: self.config.max_examples,
            });
        }
        if let Some(bound) = self.config.clip_norm {
            if !dp::within_bound(u.norm, bound) {
                return Err(Error::NormTooLarge {
                    norm: u.norm,
                    bound,
                });
            }
        }
        let (client, mut version) = self.admit(token, u.base_version)?;
        let mut inner = loop {
            // Durable before it counts: written (group-committed with other submissions) outside
            // the lock; a crash after this line keeps the update.
            let stored = self
                .updates
                .append(&self.store.update_log_path(version), client, body);
            let inner = self.lock();
            if stored.is_ok()
                && inner.version != version
                && self.may_rebuffer(&inner, u.base_version)
            {
                // Buffered: the version moved on during the write; the update still fits the
                // new one, so it goes to the new version's log (the old one is pruned).
                version = inner.version;
                continue;
            }
            let mut inner = inner;
            inner.storing.remove(&client);
            stored?;
            break inner;
        };
        let now = now_ms();
        if inner.version != version {
            // The round closed at its deadline while this update was being written.
            return Err(Error::Stale {
                got: version,
                current: inner.version,
            });
        }
        let mut tensors = u.tensors;
        buffered::scale_for_staleness(&mut tensors, version - u.base_version);
        let tensors = sum_or_keep(&self.config, inner.sum.as_mut(), tensors, u.num_examples);
        inner.accepted.insert(
            client,
            AcceptedUpdate {
                tensors,
                num_examples: u.num_examples,
                client_loss: u.client_loss,
            },
        );
        inner.counters.updates_accepted += 1;
        let mut round_closed = false;
        if inner.accepted.len() >= self.config.close_at() {
            // The update is on disk; if aggregation fails it is retried on restart or at the
            // deadline (buffered: at the next tick), so the client's submission still stands.
            match self.close_round(&mut inner, now, self.full_reason()) {
                Ok(committed) => round_closed = committed,
                Err(e) => tracing::error!("aggregation failed, will retry at the deadline: {e}"),
            }
        }
        Ok(Accepted {
            accepted: true,
            client_id: client,
            base_version: version,
            global_version: inner.version,
            round_closed,
            norm: u.norm,
        })
    }

    /// The round's checks on a parsed update of `client` trained from `base_version`; marks
    /// the client as storing so that a second submission is refused while the first is
    /// written. Returns the client and the round's version.
    fn admit(&self, token: Option<&str>, base_version: u64) -> Result<(ClientId, u64), Error> {
        let now = now_ms();
        let mut inner = self.lock();
        let client = self.authenticate_at(&inner, token, now)?;
        self.tick_locked(&mut inner, now)?;
        if self.finished(&inner) {
            return Err(Error::Finished(inner.version));
        }
        buffered::check_base(self.config.buffered, base_version, inner.version)?;
        if inner.accepted.contains_key(&client) || inner.storing.contains(&client) {
            return Err(Error::Duplicate {
                client,
                version: inner.version,
            });
        }
        if self.config.buffered.is_none() && !inner.selected.contains(&client) {
            return Err(Error::NotSelected {
                client,
                version: inner.version,
            });
        }
        inner.storing.insert(client);
        Ok((client, inner.version))
    }

    /// Applies the deadline rule at the current time. Returns whether a round closed.
    pub fn tick(&self) -> Result<bool, Error> {
        self.tick_at(now_ms())
    }

    /// [`Server::tick`] at an explicit time (milliseconds since the epoch), for tests.
    pub fn tick_at(&self, now: u64) -> Result<bool, Error> {
        let mut inner = self.lock();
        self.tick_locked(&mut inner, now)
    }

    fn tick_locked(&self, inner: &mut Inner, now: u64) -> Result<bool, Error> {
        if self.config.secure_aggregation.is_some() {
            return self.secagg_tick(inner, now);
        }
        if self.config.buffered.is_some() {
            return self.buffered_tick(inner, now);
        }
        if self.finished(inner) || now < inner.deadline_ms {
            return Ok(false);
        }
        let enough = self.config.min_clients.max(self.strategy.min_updates());
        if inner.accepted.len() >= enough {
            return self.close_round(inner, now, "deadline");
        }
        // Too few: keep the accepted updates, free the silent clients' slots, extend.
        let old_selected = inner.selected.clone();
        let old_deadline = inner.deadline_ms;
        let accepted: BTreeSet<ClientId> = inner.accepted.keys().copied().collect();
        inner.selected = accepted;
        inner.deadline_ms = self.deadline_ms(now);
        inner.counters.deadline_extensions += 1;
        if let Err(e) = self.persist(inner) {
            inner.selected = old_selected;
            inner.deadline_ms = old_deadline;
            inner.counters.deadline_extensions -= 1;
            return Err(e.into());
        }
        tracing::info!(
            version = inner.version,
            accepted = inner.accepted.len(),
            "deadline passed below --min-clients; round extended"
        );
        Ok(false)
    }

    /// Aggregates the open round, commits the next version, and opens the next round; returns
    /// `true`. A non-finite aggregate is quarantined instead ([`Server::quarantine_round`]):
    /// returns `false` and the server keeps serving the current version. On error nothing
    /// changes.
    fn close_round(&self, inner: &mut Inner, now: u64, closed_by: &str) -> Result<bool, Error> {
        let started = Instant::now();
        // Neither the round's updates nor the clients' tokens are copied for the next state
        // (together they can be hundreds of megabytes): they are moved out, and back where they
        // still belong.
        let tokens = std::mem::take(&mut inner.tokens);
        let mut accepted = std::mem::take(&mut inner.accepted);
        let dp_on = self.config.noise_multiplier > 0.0;
        let claimed: Vec<u64> = accepted.values().map(|a| a.num_examples).collect();
        // With DP noise the mean is unweighted (the noise is calibrated for it); otherwise no
        // client weighs more than --max-weight-ratio times the median claim.
        let weights = if dp_on {
            vec![1; claimed.len()]
        } else {
            capped_weights(&claimed, self.config.max_weight_ratio)
        };
        let round = RoundInputs {
            clients: accepted.keys().copied().collect(),
            claimed,
            losses: accepted.values().filter_map(|a| a.client_loss).collect(),
            dp_on,
            distributed_noise_std: None,
            started,
        };
        let mut kept: Vec<Update> = Vec::new();
        let delta = match &inner.sum {
            Some(sum) => self.mean_of_sum(inner.version, sum, &accepted, &weights),
            None => {
                kept = accepted
                    .values_mut()
                    .zip(weights)
                    .map(|(a, w)| Update {
                        tensors: a.tensors.take().unwrap_or_default(),
                        num_examples: w,
                    })
                    .collect();
                self.strategy.aggregate(&kept).map_err(Error::from)
            }
        };
        let result = delta.and_then(|d| self.commit_round(inner, d, round, now, closed_by));
        inner.tokens = tokens;
        if result.is_err() {
            for (a, u) in accepted.values_mut().zip(kept) {
                a.tensors = Some(u.tensors);
            }
            inner.accepted = accepted;
        }
        result
    }

    /// The round's weighted mean from its running sum, with the claims capped to `weights`:
    /// the clients summed with another weight (claims above the cap) are read back from the
    /// round's log and the difference added.
    fn mean_of_sum(
        &self,
        version: u64,
        sum: &RunningSum,
        accepted: &BTreeMap<ClientId, AcceptedUpdate>,
        weights: &[u64],
    ) -> Result<Vec<Vec<f32>>, Error> {
        let corrections: BTreeMap<ClientId, f64> = accepted
            .iter()
            .zip(weights)
            .filter_map(|((&client, a), &w)| {
                let change = w as f64 - summed_weight(&self.config, a.num_examples);
                (change != 0.0).then_some((client, change))
            })
            .collect();
        let mut sum = sum.clone();
        if !corrections.is_empty() {
            let logged = self.load_accepted(version, |c| corrections.contains_key(&c))?;
            for (client, change) in &corrections {
                let delta = logged
                    .get(client)
                    .and_then(|a| a.tensors.as_ref())
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "the update of client {client} is missing from the log of version {version}"
                        ))
                    })?;
                sum.add(delta, *change);
            }
        }
        sum.mean().ok_or(Error::Strategy(StrategyError::TooFew {
            strategy: self.strategy.name(),
            need: 1,
            got: 0,
        }))
    }

    /// [`Server::close_round`] once the updates are out of `inner`.
    /// `delta` is the aggregate of the updates of `round.clients`.
    fn commit_round(
        &self,
        inner: &mut Inner,
        mut delta: Vec<Vec<f32>>,
        round: RoundInputs,
        now: u64,
        closed_by: &str,
    ) -> Result<bool, Error> {
        let RoundInputs {
            clients,
            claimed,
            losses,
            dp_on,
            distributed_noise_std,
            started,
        } = round;
        let mut next = inner.clone();
        let delta_norm = tensors::l2_norm(&delta);
        let server_noise_std = match self.config.clip_norm {
            Some(c) if dp_on => dp::noise_std(self.config.noise_multiplier, c, clients.len()),
            _ => 0.0,
        };
        let version = inner.version + 1;
        let noise_std = match distributed_noise_std {
            // Secure aggregation: the clients' noise is already in the mean.
            Some(std) => std,
            None => {
                dp::add_gaussian_noise(&mut delta, server_noise_std, &mut self.noise_rng(version));
                server_noise_std
            }
        };
        self.strategy.apply(&mut next.global, &delta, &mut next.opt);
        if next.global.iter().flatten().any(|v| !v.is_finite()) {
            self.quarantine_round(inner, now)?;
            return Ok(false);
        }
        let bytes = Self::encode_model(&self.layout, &next.global, &self.metadata, version)?;
        let sha = tensors::sha256_hex(&bytes);
        let epsilon_round = next.accountant.record(self.config.noise_multiplier);
        // While noise is on, nothing computed from the updates before the noise is released:
        // the pre-noise norm, the self-reported losses and example counts are not recorded.
        let record = RoundRecord {
            round: version,
            base_version: inner.version,
            stragglers_dropped: inner.selected.len().saturating_sub(clients.len()),
            clients,
            examples: (!dp_on && !claimed.is_empty()).then(|| claimed.iter().sum()),
            closed_by: closed_by.to_string(),
            mean_client_loss: (!dp_on && !losses.is_empty())
                .then(|| losses.iter().sum::<f64>() / losses.len() as f64),
            delta_norm: (!dp_on).then_some(delta_norm),
            noise_multiplier: self.config.noise_multiplier,
            noise_std,
            epsilon_round,
            epsilon_total: next.accountant.epsilon(),
            dp_delta: self.config.dp_delta,
            aggregation_ms: started.elapsed().as_secs_f64() * 1000.0,
            completed_unix_ms: now,
            model_sha256: sha.clone(),
        };
        // Model and optimizer first, then the commit point (state.json).
        self.store.write_model(version, &bytes)?;
        if !next.opt.m.is_empty() {
            self.store
                .write_optimizer(version, &encode_opt(&self.layout, &next.opt)?)?;
        }
        next.version = version;
        next.model_bytes = Arc::new(bytes);
        next.model_sha256 = sha;
        next.started_ms = now;
        next.deadline_ms = self.deadline_ms(now);
        next.selected.clear();
        next.accepted.clear();
        if let Some(sum) = &mut next.sum {
            sum.clear();
        }
        next.counters.rounds_completed += 1;
        tracing::info!(
            version,
            clients = record.clients.len(),
            closed_by,
            "round closed in {:.1} ms",
            record.aggregation_ms
        );
        next.history.push(record);
        self.persist(&next)?;
        *inner = next;
        self.updates.close();
        if let Err(e) = self.store.prune_updates(version) {
            tracing::warn!("could not delete old updates: {e}");
        }
        Ok(true)
    }

    /// A round whose aggregate is not finite: its updates are moved to `quarantine/`, the round
    /// starts over on the same version with a new deadline, and the server keeps serving.
    fn quarantine_round(&self, inner: &mut Inner, now: u64) -> Result<(), Error> {
        tracing::error!(
            version = inner.version,
            updates = inner.accepted.len(),
            "the aggregated model is not finite; the round's updates are quarantined"
        );
        self.updates.close();
        self.store.quarantine_updates(inner.version, now)?;
        inner.accepted.clear();
        if let Some(sum) = &mut inner.sum {
            sum.clear();
        }
        inner.selected.clear();
        inner.deadline_ms = self.deadline_ms(now);
        inner.counters.rounds_quarantined += 1;
        self.persist(inner)?;
        Ok(())
    }

    fn dp_status(&self, inner: &Inner) -> DpStatus {
        DpStatus {
            clip_norm: self.config.clip_norm,
            noise_multiplier: self.config.noise_multiplier,
            delta: self.config.dp_delta,
            epsilon_total: inner.accountant.epsilon(),
            rounds: inner.accountant.rounds(),
            accountant: "RDP of the Gaussian mechanism, no sub-sampling amplification".into(),
        }
    }

    pub fn status(&self) -> Status {
        let inner = self.lock();
        Status {
            global_version: inner.version,
            round: inner.version + 1,
            model_sha256: inner.model_sha256.clone(),
            strategy: self.strategy.name().to_string(),
            finished: self.finished(&inner),
            clients: inner.tokens.len(),
            selected: inner.selected.len(),
            accepted: inner.accepted.len(),
            min_clients: self.config.min_clients,
            target_clients: self.config.close_at(),
            selection_cap: self.config.selection_cap(),
            deadline_unix_ms: inner.deadline_ms,
            num_params: self.layout.num_params(),
            dp: self.dp_status(&inner),
        }
    }

    pub fn metrics(&self) -> Metrics {
        let inner = self.lock();
        Metrics {
            counters: inner.counters.clone(),
            history: inner.history.clone(),
            dp: self.dp_status(&inner),
        }
    }

    /// The current global tensors, in layout order (for tests and tools).
    pub fn global(&self) -> Vec<Vec<f32>> {
        self.lock().global.clone()
    }
}
