//! What the aggregator keeps on disk and how it comes back: a fresh start from `--init`, the
//! saved state (`state.json`, the model of every version, the server optimizer's moments, the
//! open round's accepted updates), and a resume from it after a crash.

use super::running_sum::RunningSum;
use super::{now_ms, sum_or_keep, AcceptedUpdate, ClientEntry, Inner, JoinLimiter, Server};
use crate::config::ServerConfig;
use crate::dp::Accountant;
use crate::error::Error;
use crate::protocol::{ClientId, Counters, RoundRecord};
use crate::store::{Store, StoreError};
use crate::strategy::{OptState, Strategy};
use crate::tensors::{self, Layout, META_GLOBAL_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// 2: clients moved to the append-only `clients.log`. Schema 1 (clients inside `state.json`)
/// is still read, and its clients carried into the log on the first resume.
const SCHEMA: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Persisted {
    schema: u32,
    version: u64,
    model_sha256: String,
    strategy: String,
    started_ms: u64,
    deadline_ms: u64,
    selected: Vec<ClientId>,
    next_client: ClientId,
    /// Schema 1 only: (client id, SHA-256 of its token). Schema 2 keeps them in `clients.log`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clients: Vec<(ClientId, String)>,
    history: Vec<RoundRecord>,
    counters: Counters,
}

impl Server {
    /// The server around `inner`: one constructor for a fresh start and a resume.
    fn assemble(
        config: ServerConfig,
        strategy: Box<dyn Strategy>,
        store: Store,
        layout: Layout,
        metadata: HashMap<String, String>,
        model_bytes_len: usize,
        inner: Inner,
    ) -> Self {
        Self {
            model_bytes_len,
            updates: Default::default(),
            config,
            strategy,
            store,
            layout,
            metadata,
            inner: Mutex::new(inner),
            secagg: Default::default(),
        }
    }

    pub(super) fn start(
        config: ServerConfig,
        strategy: Box<dyn Strategy>,
        store: Store,
    ) -> Result<Self, Error> {
        let init = config
            .init_bytes()
            .map_err(|e| Error::Config(format!("--init {}: {e}", config.init.display())))?;
        let model = tensors::read_model(&init)
            .map_err(|e| Error::Config(format!("--init {}: {e}", config.init.display())))?;
        let mut metadata = model.metadata;
        metadata.remove(META_GLOBAL_VERSION);
        let bytes = Self::encode_model(&model.layout, &model.values, &metadata, 0)?;
        store.write_model(0, &bytes)?;
        // The body limit follows the f32 model as served (and as a resume measures it), not the
        // --init file, which may be f16 and half that size.
        let model_bytes_len = bytes.len();
        let now = now_ms();
        let deadline_ms = now + (config.round_deadline_secs * 1000.0) as u64;
        let inner = Inner {
            version: 0,
            global: model.values,
            model_sha256: tensors::sha256_hex(&bytes),
            model_bytes: Arc::new(bytes),
            opt: OptState::default(),
            tokens: HashMap::new(),
            next_client: 1,
            started_ms: now,
            deadline_ms,
            selected: BTreeSet::new(),
            accepted: BTreeMap::new(),
            sum: sums_updates(&config, strategy.as_ref()).then(|| RunningSum::zeros(&model.layout)),
            storing: BTreeSet::new(),
            history: Vec::new(),
            accountant: Accountant::new(config.dp_delta),
            counters: Counters::default(),
            joins: JoinLimiter::full(config.max_joins_per_minute, now),
        };
        tracing::info!(
            params = model.layout.num_params(),
            tensors = model.layout.names.len(),
            "started from {}",
            config.init.display()
        );
        Ok(Self::assemble(
            config,
            strategy,
            store,
            model.layout,
            metadata,
            model_bytes_len,
            inner,
        ))
    }

    pub(super) fn resume(
        config: ServerConfig,
        strategy: Box<dyn Strategy>,
        store: Store,
        json: &[u8],
    ) -> Result<Self, Error> {
        let p: Persisted =
            serde_json::from_slice(json).map_err(|e| Error::Corrupt(format!("state.json: {e}")))?;
        if p.schema != SCHEMA && p.schema != 1 {
            return Err(Error::Corrupt(format!(
                "state.json schema {} (this build reads {SCHEMA})",
                p.schema
            )));
        }
        let path = store.model_path(p.version);
        let bytes = store
            .read(&path)?
            .ok_or_else(|| Error::Corrupt(format!("{} is missing", path.display())))?;
        if tensors::sha256_hex(&bytes) != p.model_sha256 {
            return Err(Error::Corrupt(format!(
                "{} does not match the SHA-256 in state.json",
                path.display()
            )));
        }
        let model = tensors::read_model(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
        let mut metadata = model.metadata;
        metadata.remove(META_GLOBAL_VERSION);
        let opt = match store.read(&store.optimizer_path(p.version))? {
            Some(b) => decode_opt(&model.layout, &b)?,
            None => OptState::default(),
        };
        if p.strategy != strategy.name() {
            tracing::warn!(
                "state was built with --strategy {}; continuing with {}",
                p.strategy,
                strategy.name()
            );
        }
        let mut sum =
            sums_updates(&config, strategy.as_ref()).then(|| RunningSum::zeros(&model.layout));
        let accepted = load_accepted(
            &config,
            &store,
            &model.layout,
            p.version,
            |_| true,
            sum.as_mut(),
        )?;
        let mut accountant = Accountant::new(config.dp_delta);
        for r in &p.history {
            accountant.record(r.noise_multiplier);
        }
        let now = now_ms();
        let tokens = resume_clients(&store, &p.clients)?;
        let next_client = tokens
            .values()
            .map(|e| e.id + 1)
            .max()
            .unwrap_or(1)
            .max(p.next_client);
        let mut selected: BTreeSet<ClientId> = p.selected.into_iter().collect();
        selected.extend(accepted.keys().copied());
        tracing::info!(
            version = p.version,
            accepted = accepted.len(),
            "resumed from {}",
            store.dir().display()
        );
        let inner = Inner {
            version: p.version,
            global: model.values,
            model_sha256: p.model_sha256,
            model_bytes: Arc::new(bytes),
            opt,
            tokens,
            next_client,
            started_ms: p.started_ms,
            deadline_ms: p.deadline_ms,
            selected,
            accepted,
            sum,
            storing: BTreeSet::new(),
            history: p.history,
            accountant,
            counters: p.counters,
            joins: JoinLimiter::full(config.max_joins_per_minute, now),
        };
        let model_bytes_len = inner.model_bytes.len();
        Ok(Self::assemble(
            config,
            strategy,
            store,
            model.layout,
            metadata,
            model_bytes_len,
            inner,
        ))
    }

    /// Writes `state.json` (the commit point). Its size follows the rounds, not the clients.
    pub(super) fn persist(&self, inner: &Inner) -> Result<(), StoreError> {
        let p = Persisted {
            schema: SCHEMA,
            version: inner.version,
            model_sha256: inner.model_sha256.clone(),
            strategy: self.strategy.name().to_string(),
            started_ms: inner.started_ms,
            deadline_ms: inner.deadline_ms,
            selected: inner.selected.iter().copied().collect(),
            next_client: inner.next_client,
            clients: Vec::new(),
            history: inner.history.clone(),
            counters: inner.counters.clone(),
        };
        let json = serde_json::to_vec_pretty(&p).expect("state serialises");
        crate::store::write_atomic(&self.store.state_path(), &json)
    }
}

/// The clients of `clients.log`, plus those of a schema-1 `state.json` (appended to the log
/// once, so that the next `state.json` can leave them out). Their tokens' issue time is
/// unknown: the resume counts as issued.
fn resume_clients(
    store: &Store,
    from_state: &[(ClientId, String)],
) -> Result<HashMap<String, ClientEntry>, Error> {
    let mut tokens: HashMap<String, ClientEntry> = store
        .read_clients()?
        .into_iter()
        .map(|(id, hash, issued_ms)| (hash, ClientEntry { id, issued_ms }))
        .collect();
    let now = now_ms();
    for (id, hash) in from_state {
        if !tokens.contains_key(hash) {
            store.append_client(*id, hash, now)?;
            tokens.insert(
                hash.clone(),
                ClientEntry {
                    id: *id,
                    issued_ms: now,
                },
            );
        }
    }
    Ok(tokens)
}

fn opt_layout(layout: &Layout) -> Layout {
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    for prefix in ["m.", "v."] {
        for (n, s) in layout.names.iter().zip(&layout.shapes) {
            names.push(format!("{prefix}{n}"));
            shapes.push(s.clone());
        }
    }
    Layout { names, shapes }
}

pub(super) fn encode_opt(layout: &Layout, opt: &OptState) -> Result<Vec<u8>, Error> {
    let ol = opt_layout(layout);
    let values: Vec<Vec<f32>> = opt.m.iter().chain(&opt.v).cloned().collect();
    // `serialize` wants layout order (sorted names); "m." < "v." and each half is sorted.
    tensors::serialize(&ol, &values, &HashMap::new()).map_err(|e| Error::Corrupt(e.to_string()))
}

fn decode_opt(layout: &Layout, bytes: &[u8]) -> Result<OptState, Error> {
    let file =
        tensors::read_model(bytes).map_err(|e| Error::Corrupt(format!("optimizer state: {e}")))?;
    if file.layout != opt_layout(layout) {
        return Err(Error::Corrupt(
            "optimizer state does not match the model".into(),
        ));
    }
    let n = layout.names.len();
    let mut values = file.values;
    let v = values.split_off(n);
    Ok(OptState { m: values, v })
}

/// Whether a server sums its round's updates as they arrive (`running_sum.rs`): a weighted
/// mean does; secure aggregation keeps no plain updates at all.
fn sums_updates(config: &ServerConfig, strategy: &dyn Strategy) -> bool {
    strategy.is_weighted_mean() && config.secure_aggregation.is_none()
}

/// The accepted updates of the round on `version` from its log, those of the clients `wanted`
/// selects, read one at a time (scaled by the staleness they were accepted with, in buffered
/// mode). With a `sum`, each delta is added to it and not kept (`running_sum.rs`), so a round
/// of any size comes back in one model's worth of memory. Unreadable or misfiled records are
/// skipped with a warning.
fn load_accepted(
    config: &ServerConfig,
    store: &Store,
    layout: &Layout,
    version: u64,
    wanted: impl Fn(ClientId) -> bool,
    mut sum: Option<&mut RunningSum>,
) -> Result<BTreeMap<ClientId, AcceptedUpdate>, Error> {
    // A client whose first write failed (and who was told so) may have retried: only its last
    // record counts. A first pass finds it, so that nothing is summed twice.
    let mut last: HashMap<ClientId, usize> = HashMap::new();
    let mut index = 0;
    store.visit_updates(version, |client, _| {
        last.insert(client, index);
        index += 1;
    })?;
    let mut accepted = BTreeMap::new();
    let mut index = 0;
    store.visit_updates(version, |client, body| {
        let this = index;
        index += 1;
        if !wanted(client) || last.get(&client) != Some(&this) {
            return;
        }
        let parsed = tensors::parse_update(body, layout).map_err(Error::from);
        // Buffered: the log of `version` also holds updates of older bases, with the
        // staleness they were accepted with (`buffered.rs`).
        let staleness = parsed.as_ref().map_err(|_| ()).and_then(|u| {
            super::buffered::check_base(config.buffered, u.base_version, version)
                .map_err(|e| tracing::warn!("ignoring misfiled update of client {client}: {e}"))
        });
        match (parsed, staleness) {
            (Ok(mut u), Ok(staleness)) => {
                super::buffered::scale_for_staleness(&mut u.tensors, staleness);
                let tensors = sum_or_keep(config, sum.as_deref_mut(), u.tensors, u.num_examples);
                accepted.insert(
                    client,
                    AcceptedUpdate {
                        tensors,
                        num_examples: u.num_examples,
                        client_loss: u.client_loss,
                    },
                );
            }
            (Ok(_), Err(())) => {}
            (Err(e), _) => tracing::warn!("ignoring unreadable update of client {client}: {e}"),
        }
    })?;
    Ok(accepted)
}

impl Server {
    /// [`load_accepted`] with this server's configuration, store and layout.
    pub(super) fn load_accepted(
        &self,
        version: u64,
        wanted: impl Fn(ClientId) -> bool,
    ) -> Result<BTreeMap<ClientId, AcceptedUpdate>, Error> {
        load_accepted(
            &self.config,
            &self.store,
            &self.layout,
            version,
            wanted,
            None,
        )
    }
}
