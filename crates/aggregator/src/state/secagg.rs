//! Secure-aggregation rounds (`--secure-aggregation`): the round's clipped deltas reach the
//! server only masked, through the four phases of [`websr_federated::secagg`], and the server
//! applies the unmasked *mean* through the ordinary close path (server step, DP accounting,
//! commit of the next version).
//!
//! # Sessions and phases
//!
//! A round on global version `v` runs as a *session* with its own id (the SecAgg `round` that
//! enters every key derivation; announced in [`RoundConfig::secure_aggregation`]). A session that
//! fails is started over with a new id on the same version; its clients are released and select
//! themselves again through `GET /v1/round`.
//!
//! | phase | open until | closes with |
//! |---|---|---|
//! | `keys` | `--target-clients` selected clients advertised keys, or the round deadline with at least `max(t, --min-clients)` (below that: the deadline is extended as in plain rounds) | `U1`, the key directory |
//! | `shares` | every member of `U1` sent its shares, or `--secagg-phase-secs` | `U2`, the routed shares |
//! | `masked` | every member of `U2` sent its masked input, or `--secagg-phase-secs` | `U3`, the unmasking request |
//! | `unmask` | every member of `U3` answered, or `--secagg-phase-secs` | the sum over `U3` |
//!
//! Clients train *before* the keys phase (selection, download and training as in plain rounds),
//! so the later phases only carry messages. A phase that ends with fewer than `t` clients, or an
//! unmasking that cannot rebuild a secret, fails the session (no sum, nothing applied).
//!
//! # What is kept, and where
//!
//! Memory only: the session (keys, routed ciphertexts, the running sum of the masked inputs,
//! the shares revealed for unmasking). Nothing of a session is written to `--state-dir` and no
//! masked or unmasked individual input is logged; only the decoded mean of the survivors
//! becomes a model version. A restart in the middle of a session abandons it: calls naming it
//! answer `410 Gone`, `GET /v1/round` announces a new session on the same version, and the
//! clients start over from their (already trained) delta or a new one.
//!
//! # Differential privacy
//!
//! With `--noise-multiplier z` the server adds no noise: each client adds `N(0, (2 z C)^2 / t)`
//! to its clipped delta before encoding ([`DistributedNoise`]), so the `n >= t` survivors' sum
//! carries noise of variance `n (2 z C)^2 / t >= (2 z C)^2`, which is at least the noise of the
//! plain server-side mechanism on the mean. The accountant records the round with multiplier `z`
//! as in plain rounds, and the round record's `noise_std` is the std of the clients' noise on
//! the mean (`2 z C sqrt(n / t) / n`). That epsilon holds only if the survivors added their noise
//! honestly: `c` clients colluding with the server can leave theirs out, leaving
//! `(n - c) / t` of the variance.

use super::{now_ms, Error, Inner, RoundInputs, Server};
use crate::protocol::{self, ClientId, SecAggAck, SecAggResult, SecureAggregation};
use crate::strategy::Update;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::MutexGuard;
use websr_federated::secagg::{
    self, Aggregate, DistributedNoise, FixedPoint, KeyDirectory, RoutedShares, SecAggConfig,
    SecAggError, UnmaskRequest,
};

/// How many ended sessions are remembered, so that their clients get a precise answer.
const ENDED_KEPT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Keys,
    Shares,
    Masked,
    Unmask,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Keys => "keys",
            Phase::Shares => "shares",
            Phase::Masked => "masked",
            Phase::Unmask => "unmask",
        }
    }
}

struct Session {
    id: u64,
    /// The global version the session's round trains from.
    version: u64,
    server: secagg::Server,
    phase: Phase,
    /// Who may answer the open phase (during `keys`: the selected clients, see `Inner`).
    expected: BTreeSet<ClientId>,
    /// Who has answered the open phase.
    received: BTreeSet<ClientId>,
    /// Who advertised keys (`U1` once `keys` closed).
    advertised: BTreeSet<ClientId>,
    /// Deadline of the open phase after `keys` (`keys` has the round's deadline).
    phase_deadline_ms: u64,
    directory: Option<KeyDirectory>,
    routed: BTreeMap<ClientId, RoutedShares>,
    request: Option<UnmaskRequest>,
}

#[derive(Debug, Clone)]
enum Ended {
    Committed {
        version: u64,
        survivors: Vec<ClientId>,
    },
    Failed(String),
}

/// The secure-aggregation part of the server's state (memory only).
#[derive(Default)]
pub(super) struct SecAggState {
    session: Option<Session>,
    ended: VecDeque<(u64, Ended)>,
    last_id: u64,
}

impl SecAggState {
    fn end(&mut self, id: u64, how: Ended) {
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back((id, how));
    }

    /// The answer to a call naming session `id`, which is not the open one.
    fn not_open(&self, id: u64) -> Error {
        match self.ended.iter().rev().find(|(i, _)| *i == id) {
            Some((_, Ended::Committed { version, .. })) => Error::SecAggGone(format!(
                "session {id} has ended: it produced global version {version}"
            )),
            Some((_, Ended::Failed(why))) => Error::SecAggGone(format!(
                "session {id} failed ({why}); GET /v1/round and start over"
            )),
            None => Error::SecAggGone(format!(
                "no session {id} on this server (a restart abandons the open session): \
                 GET /v1/round and start over"
            )),
        }
    }
}

/// What `GET /v1/round` adds in secure-aggregation mode.
pub(super) struct RoundView {
    pub info: SecureAggregation,
    /// Whether new clients may still be selected (only while the keys phase is open).
    pub selecting: bool,
    /// Whether this client has advertised keys in the open session.
    pub submitted: bool,
}

/// A client's message failed the state machine's checks: refused, the session goes on.
fn refused(e: SecAggError) -> Error {
    match e {
        SecAggError::WrongRound { .. }
        | SecAggError::OutOfOrder { .. }
        | SecAggError::Duplicate(_)
        | SecAggError::Aborted(_) => Error::SecAggConflict(e.to_string()),
        SecAggError::UnknownClient(_) => Error::SecAggForbidden(e.to_string()),
        e => Error::SecAggInvalid(e.to_string()),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::SecAggInvalid(format!("the {what} message is not valid JSON: {e}")))
}

impl Server {
    fn secagg_lock(&self) -> MutexGuard<'_, SecAggState> {
        self.secagg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SecAgg config of session `id`.
    fn secagg_config(&self, id: u64) -> Result<SecAggConfig, Error> {
        let sa = self
            .config
            .secure_aggregation
            .as_ref()
            .ok_or(Error::SecAggOff)?;
        let threshold = self.config.secagg_threshold().ok_or(Error::SecAggOff)?;
        let clip = self
            .config
            .clip_norm
            .ok_or_else(|| Error::Config("--secure-aggregation needs --clip-norm".into()))?;
        let cap = self.config.selection_cap();
        let z = self.config.noise_multiplier;
        let encoding = if z > 0.0 {
            DistributedNoise::for_multiplier(z, clip, threshold).and_then(|n| n.encoding(clip, cap))
        } else {
            FixedPoint::for_clip_norm(clip, cap)
        }
        .map_err(|e| Error::Config(e.to_string()))?;
        Ok(SecAggConfig {
            round: id,
            threshold,
            neighbours: sa.neighbours,
            vector_len: self.layout.num_params(),
            encoding,
        })
    }

    /// Opens a session for the current version unless one is open.
    fn ensure_session(&self, inner: &Inner, sa: &mut SecAggState, now: u64) -> Result<(), Error> {
        if sa
            .session
            .as_ref()
            .is_some_and(|s| s.version == inner.version)
        {
            return Ok(());
        }
        // Unique across restarts as long as the clock does not go back by more than a session.
        let id = now.max(sa.last_id + 1);
        let config = self.secagg_config(id)?;
        let server = secagg::Server::new(config).map_err(|e| Error::Config(e.to_string()))?;
        sa.last_id = id;
        sa.session = Some(Session {
            id,
            version: inner.version,
            server,
            phase: Phase::Keys,
            expected: BTreeSet::new(),
            received: BTreeSet::new(),
            advertised: BTreeSet::new(),
            phase_deadline_ms: 0,
            directory: None,
            routed: BTreeMap::new(),
            request: None,
        });
        tracing::info!(
            session = id,
            version = inner.version,
            "secure-aggregation session open"
        );
        Ok(())
    }

    /// `GET /v1/round`'s secure-aggregation part (`None` when the mode is off).
    pub(super) fn secagg_view(
        &self,
        inner: &mut Inner,
        client: ClientId,
        now: u64,
    ) -> Result<Option<RoundView>, Error> {
        let Some(settings) = &self.config.secure_aggregation else {
            return Ok(None);
        };
        if self.finished(inner) {
            return Ok(None);
        }
        let mut sa = self.secagg_lock();
        self.ensure_session(inner, &mut sa, now)?;
        let s = sa.session.as_ref().expect("just ensured");
        Ok(Some(RoundView {
            info: SecureAggregation {
                config: s.server.config().clone(),
                clip_norm: self.config.clip_norm.unwrap_or_default(),
                noise_multiplier: self.config.noise_multiplier,
                phase: s.phase.name().to_string(),
                phase_secs: settings.phase_secs,
            },
            selecting: s.phase == Phase::Keys,
            submitted: s.advertised.contains(&client),
        }))
    }

    /// The deadline rule in secure-aggregation mode (called by `tick_locked`).
    pub(super) fn secagg_tick(&self, inner: &mut Inner, now: u64) -> Result<bool, Error> {
        if self.finished(inner) {
            return Ok(false);
        }
        let mut sa = self.secagg_lock();
        self.ensure_session(inner, &mut sa, now)?;
        let s = sa.session.as_ref().expect("just ensured");
        if s.phase != Phase::Keys {
            return if now < s.phase_deadline_ms {
                Ok(false)
            } else {
                self.close_phase(inner, &mut sa, now, "deadline")
            };
        }
        if now < inner.deadline_ms {
            return Ok(false);
        }
        let enough = self.config.min_clients.max(s.server.config().threshold);
        if s.received.len() >= enough {
            return self.close_phase(inner, &mut sa, now, "deadline");
        }
        // Too few keys: keep them, release the silent clients, extend (as plain rounds do).
        inner.selected = s.received.clone();
        inner.deadline_ms = self.deadline_ms(now);
        inner.counters.deadline_extensions += 1;
        if let Err(e) = self.persist(inner) {
            tracing::warn!("could not save the extended deadline: {e}");
        }
        tracing::info!(
            version = inner.version,
            keys = s.received.len(),
            "deadline passed with too few keys for secure aggregation; round extended"
        );
        Ok(false)
    }

    /// Closes the open phase; returns whether a round was committed.
    fn close_phase(
        &self,
        inner: &mut Inner,
        sa: &mut SecAggState,
        now: u64,
        why: &str,
    ) -> Result<bool, Error> {
        let phase_secs = self
            .config
            .secure_aggregation
            .as_ref()
            .map_or(60.0, |s| s.phase_secs);
        let Some(s) = sa.session.as_mut() else {
            return Ok(false);
        };
        let closed = s.phase;
        let step: Result<Option<Aggregate>, SecAggError> = match s.phase {
            Phase::Keys => s.server.close_keys().map(|dir| {
                s.expected = dir.participants.iter().map(|p| p.client).collect();
                s.directory = Some(dir);
                s.phase = Phase::Shares;
                None
            }),
            Phase::Shares => s.server.close_shares().map(|routed| {
                s.expected = routed.iter().map(|r| r.client).collect();
                s.routed = routed.into_iter().map(|r| (r.client, r)).collect();
                s.phase = Phase::Masked;
                None
            }),
            Phase::Masked => s.server.close_masked().map(|request| {
                // The ciphertexts are no longer needed by anyone.
                s.routed.clear();
                s.expected = request.survivors.iter().copied().collect();
                s.request = Some(request);
                s.phase = Phase::Unmask;
                None
            }),
            Phase::Unmask => s.server.finish().map(Some),
        };
        match step {
            Err(e) => {
                self.fail_session(inner, sa, now, e.to_string());
                Ok(false)
            }
            Ok(None) => {
                s.received.clear();
                s.phase_deadline_ms = now + (phase_secs * 1000.0) as u64;
                tracing::info!(
                    session = s.id,
                    clients = s.expected.len(),
                    "secure aggregation: {} phase closed ({why})",
                    closed.name()
                );
                Ok(false)
            }
            Ok(Some(aggregate)) => self.commit_secagg(inner, sa, aggregate, now),
        }
    }

    /// Ends the open session without a sum; the round starts over on the same version.
    fn fail_session(&self, inner: &mut Inner, sa: &mut SecAggState, now: u64, why: String) {
        if let Some(s) = sa.session.take() {
            tracing::warn!(
                session = s.id,
                version = inner.version,
                "secure-aggregation session failed: {why}"
            );
            sa.end(s.id, Ended::Failed(why));
        }
        inner.selected.clear();
        inner.deadline_ms = self.deadline_ms(now);
        inner.counters.secagg_sessions_failed += 1;
        if let Err(e) = self.persist(inner) {
            tracing::warn!("could not save the restarted round: {e}");
        }
    }

    /// Applies the survivors' unmasked mean as the round's aggregate.
    fn commit_secagg(
        &self,
        inner: &mut Inner,
        sa: &mut SecAggState,
        aggregate: Aggregate,
        now: u64,
    ) -> Result<bool, Error> {
        let s = sa.session.as_ref().expect("the session being finished");
        let cfg = s.server.config().clone();
        let n = aggregate.survivors.len();
        let lengths: Vec<usize> = self
            .layout
            .shapes
            .iter()
            .map(|sh| sh.iter().product())
            .collect();
        let mean = match cfg
            .encoding
            .decode_mean_tensors(&aggregate.sum, n, &lengths)
        {
            Ok(m) => m,
            Err(e) => {
                self.fail_session(inner, sa, now, format!("decoding the sum: {e}"));
                return Ok(false);
            }
        };
        drop(aggregate.sum);
        let z = self.config.noise_multiplier;
        let noise_std = match self.config.clip_norm {
            Some(c) if z > 0.0 => DistributedNoise::for_multiplier(z, c, cfg.threshold)
                .map(|d| d.client_std() * (n as f64).sqrt() / n as f64)
                .unwrap_or(0.0),
            _ => 0.0,
        };
        let round = RoundInputs {
            started: std::time::Instant::now(),
            clients: aggregate.survivors.clone(),
            claimed: Vec::new(),
            losses: Vec::new(),
            dp_on: z > 0.0,
            distributed_noise_std: Some(noise_std),
        };
        let committed = self
            .strategy
            .aggregate(&[Update {
                tensors: mean,
                num_examples: 1,
            }])
            .map_err(Error::from)
            .and_then(|delta| self.commit_round(inner, delta, round, now, "secure-aggregation"));
        match committed {
            Ok(true) => {
                let s = sa.session.take().expect("the session being finished");
                sa.end(
                    s.id,
                    Ended::Committed {
                        version: inner.version,
                        survivors: aggregate.survivors,
                    },
                );
                Ok(true)
            }
            // Quarantined (not finite): the round already starts over.
            Ok(false) => {
                if let Some(s) = sa.session.take() {
                    sa.end(
                        s.id,
                        Ended::Failed("the aggregate is not finite (quarantined)".into()),
                    );
                }
                inner.counters.secagg_sessions_failed += 1;
                Ok(false)
            }
            Err(e) => {
                tracing::error!("committing the secure-aggregation round failed: {e}");
                self.fail_session(
                    inner,
                    sa,
                    now,
                    "the server could not commit the round".into(),
                );
                Ok(false)
            }
        }
    }

    /// One client message of `phase` for session `id` from client `from` (as the message says);
    /// `apply` hands it to the state machine.
    fn secagg_post(
        &self,
        token: Option<&str>,
        id: u64,
        from: ClientId,
        phase: Phase,
        apply: impl FnOnce(&mut secagg::Server) -> Result<(), SecAggError>,
    ) -> Result<SecAggAck, Error> {
        let now = now_ms();
        let mut inner = self.lock();
        let client = self.authenticate_at(&inner, token, now)?;
        if self.config.secure_aggregation.is_none() {
            return Err(Error::SecAggOff);
        }
        self.tick_locked(&mut inner, now)?;
        if self.finished(&inner) {
            return Err(Error::Finished(inner.version));
        }
        if from != client {
            return Err(Error::SecAggInvalid(format!(
                "the message is from client {from}, the token is client {client}'s"
            )));
        }
        let mut sa = self.secagg_lock();
        self.ensure_session(&inner, &mut sa, now)?;
        let s = sa.session.as_mut().expect("just ensured");
        if s.id != id {
            return Err(sa.not_open(id));
        }
        if s.phase != phase {
            return Err(Error::SecAggConflict(format!(
                "the {} phase of session {id} is not open (it is at {})",
                phase.name(),
                s.phase.name()
            )));
        }
        let member = if phase == Phase::Keys {
            inner.selected.contains(&client)
        } else {
            s.expected.contains(&client)
        };
        if !member {
            return Err(Error::SecAggForbidden(format!(
                "client {client} has no part in the {} phase of session {id}{}",
                phase.name(),
                if phase == Phase::Keys {
                    ": GET /v1/round to be selected"
                } else {
                    ""
                }
            )));
        }
        if s.received.contains(&client) {
            return Err(Error::SecAggConflict(format!(
                "client {client} already answered the {} phase of session {id}",
                phase.name()
            )));
        }
        apply(&mut s.server).map_err(refused)?;
        s.received.insert(client);
        if phase == Phase::Keys {
            s.advertised.insert(client);
        }
        let all = if phase == Phase::Keys {
            s.received.len() >= self.config.target_clients
        } else {
            s.received.len() >= s.expected.len()
        };
        if all {
            self.close_phase(&mut inner, &mut sa, now, "every client answered")?;
        }
        let phase_now = match &sa.session {
            Some(s) if s.id == id => s.phase.name(),
            _ => match sa.ended.iter().rev().find(|(i, _)| *i == id) {
                Some((_, Ended::Committed { .. })) => "done",
                _ => "failed",
            },
        };
        Ok(SecAggAck {
            session: id,
            phase: phase_now.to_string(),
            global_version: inner.version,
        })
    }

    /// A broadcast of session `id` for the calling client: `get` picks it from the open session.
    fn secagg_get<T>(
        &self,
        token: Option<&str>,
        id: u64,
        get: impl FnOnce(&Session, ClientId) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let now = now_ms();
        let mut inner = self.lock();
        let client = self.authenticate_at(&inner, token, now)?;
        if self.config.secure_aggregation.is_none() {
            return Err(Error::SecAggOff);
        }
        self.tick_locked(&mut inner, now)?;
        let sa = self.secagg_lock();
        match &sa.session {
            Some(s) if s.id == id => get(s, client),
            _ => Err(sa.not_open(id)),
        }
    }

    /// `POST /v1/secagg/keys`: an [`secagg::AdvertiseKeys`] (JSON).
    pub fn secagg_keys(&self, token: Option<&str>, body: &[u8]) -> Result<SecAggAck, Error> {
        let msg: secagg::AdvertiseKeys = parse_json(body, "keys")?;
        self.secagg_post(token, msg.round, msg.client, Phase::Keys, |s| {
            s.receive_keys(msg)
        })
    }

    /// `POST /v1/secagg/shares`: a [`secagg::ShareKeys`] (JSON).
    pub fn secagg_shares(&self, token: Option<&str>, body: &[u8]) -> Result<SecAggAck, Error> {
        let msg: secagg::ShareKeys = parse_json(body, "shares")?;
        self.secagg_post(token, msg.round, msg.client, Phase::Shares, |s| {
            s.receive_shares(msg)
        })
    }

    /// `POST /v1/secagg/masked`: a masked input in the binary form of
    /// [`protocol::decode_masked_input`].
    pub fn secagg_masked(&self, token: Option<&str>, body: &[u8]) -> Result<SecAggAck, Error> {
        let msg = protocol::decode_masked_input(body, self.layout.num_params())
            .map_err(Error::SecAggInvalid)?;
        self.secagg_post(token, msg.round, msg.client, Phase::Masked, |s| {
            s.receive_masked(msg)
        })
    }

    /// `POST /v1/secagg/unmask`: an [`secagg::UnmaskResponse`] (JSON).
    pub fn secagg_unmask(&self, token: Option<&str>, body: &[u8]) -> Result<SecAggAck, Error> {
        let msg: secagg::UnmaskResponse = parse_json(body, "unmask")?;
        self.secagg_post(token, msg.round, msg.client, Phase::Unmask, |s| {
            s.receive_unmask(msg)
        })
    }

    /// `GET /v1/secagg/keys?session=ID`: the key directory, once the keys phase closed.
    pub fn secagg_directory(&self, token: Option<&str>, id: u64) -> Result<KeyDirectory, Error> {
        self.secagg_get(token, id, |s, client| {
            if s.phase == Phase::Keys {
                return Err(not_yet(s, Phase::Keys));
            }
            if !s.advertised.contains(&client) {
                return Err(not_part(s, client, "the key directory"));
            }
            Ok(s.directory.clone().expect("closed keys phase"))
        })
    }

    /// `GET /v1/secagg/shares?session=ID`: the shares routed to the caller.
    pub fn secagg_routed(&self, token: Option<&str>, id: u64) -> Result<RoutedShares, Error> {
        self.secagg_get(token, id, |s, client| {
            if s.phase <= Phase::Shares {
                return Err(not_yet(s, Phase::Shares));
            }
            if s.phase > Phase::Masked {
                return Err(Error::SecAggConflict(format!(
                    "session {} is past the masked phase: the routed shares are gone",
                    s.id
                )));
            }
            s.routed
                .get(&client)
                .cloned()
                .ok_or_else(|| not_part(s, client, "routed shares"))
        })
    }

    /// `GET /v1/secagg/unmask?session=ID`: the unmasking request.
    pub fn secagg_unmask_request(
        &self,
        token: Option<&str>,
        id: u64,
    ) -> Result<UnmaskRequest, Error> {
        self.secagg_get(token, id, |s, client| {
            if s.phase <= Phase::Masked {
                return Err(not_yet(s, Phase::Masked));
            }
            if !s.expected.contains(&client) {
                return Err(not_part(s, client, "the unmasking request"));
            }
            Ok(s.request.clone().expect("closed masked phase"))
        })
    }

    /// `GET /v1/secagg/result?session=ID`: how the session ended.
    pub fn secagg_result(&self, token: Option<&str>, id: u64) -> Result<SecAggResult, Error> {
        let now = now_ms();
        let mut inner = self.lock();
        self.authenticate_at(&inner, token, now)?;
        if self.config.secure_aggregation.is_none() {
            return Err(Error::SecAggOff);
        }
        self.tick_locked(&mut inner, now)?;
        let sa = self.secagg_lock();
        if let Some(s) = sa.session.as_ref().filter(|s| s.id == id) {
            return Err(Error::SecAggNotYet(format!(
                "session {id} is at its {} phase",
                s.phase.name()
            )));
        }
        match sa.ended.iter().rev().find(|(i, _)| *i == id) {
            Some((_, Ended::Committed { version, survivors })) => Ok(SecAggResult {
                session: id,
                global_version: *version,
                survivors: survivors.clone(),
            }),
            _ => Err(sa.not_open(id)),
        }
    }
}

fn not_yet(s: &Session, waiting_for: Phase) -> Error {
    Error::SecAggNotYet(format!(
        "the {} phase of session {} is still open; ask again",
        waiting_for.name(),
        s.id
    ))
}

fn not_part(s: &Session, client: ClientId, what: &str) -> Error {
    Error::SecAggForbidden(format!(
        "client {client} has no part in session {} at its {} phase ({what})",
        s.id,
        s.phase.name()
    ))
}
