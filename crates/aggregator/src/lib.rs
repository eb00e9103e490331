//! # websr-aggregator
//!
//! The native federated-learning server for websr models. Clients (the browser app, `websr
//! fl-client`) download a versioned global model, train it locally on their own photos, and send
//! back only the difference; the server combines the differences round by round. It does not
//! depend on burn: a model is a safetensors file of named `f32` tensors and every strategy works
//! on flat vectors per tensor.
//!
//! | module | what it holds |
//! |---|---|
//! | [`flags`] | the command-line flags ([`Args`]), turned into a [`ServerConfig`] in one place |
//! | [`config`] | what the server runs with ([`ServerConfig`]: rounds, strategy, DP, limits), free of clap |
//! | [`state`] | rounds, clients and tokens, deadlines, round completion ([`Server`]) |
//! | [`protocol`] | the JSON messages of the wire protocol |
//! | [`error`] | what the server refuses ([`Error`]) and why |
//! | [`strategy`] | the [`Strategy`] trait and FedAvg, FedProx, FedAdam, FedYogi, median, trimmed mean, Krum as pure functions; [`StrategyConfig`] picks one |
//! | [`dp`] | clipping, Gaussian noise, the RDP accountant (its maths is documented there) |
//! | [`tensors`] | safetensors <-> named flat vectors, strict validation of client bodies |
//! | [`store`] | atomic files in `--state-dir` (temp + fsync + rename), the append-only client log |
//! | [`update_log`] | the open round's accepted updates, group-committed (one fsync per batch) |
//! | [`api`] | the axum router [`app`] and the JSON errors |
//!
//! # Wire protocol (version 1)
//!
//! JSON bodies are UTF-8; model and update bodies are safetensors
//! (`application/octet-stream`). Every call but `join`, `status` and `metrics` carries
//! `Authorization: Bearer <token>`. Every error is a 4xx (or 500) status with the body
//! `{"error": "<what was wrong>"}`, and a refused request changes nothing.
//!
//! 1. `POST /v1/join` (no body) -> `201 {"client_id": 7, "token": "<64 hex>", "expires_unix_ms":
//!    ...}`. Keep the token; the server stores only its SHA-256 (one line of `clients.log`). It
//!    stops working at `expires_unix_ms` (`--token-ttl-secs`; then `401`, join again). Joins are
//!    rate-limited (`--max-joins-per-minute`): `429` with `Retry-After`.
//! 2. `GET /v1/round` -> `200` [`protocol::RoundConfig`]: `round`, `global_version`,
//!    `model_sha256`, `selected`, `submitted`, `finished`, `retry_after_s`, `deadline_unix_ms`,
//!    `min_clients`, `target_clients`, `accepted`, `strategy`, `prox_mu`, `clip_norm`,
//!    `local_epochs`, `client_lr`, `batch_size`, `max_examples`. This call also *selects* the
//!    client when the round has a free slot (`selected: true`); an unselected client asks
//!    again after `retry_after_s` seconds.
//! 3. `GET /v1/model` -> `200` the global model as safetensors. The header metadata is the
//!    original file's (`format`, `format_version`, `spec`, ...) plus `global_version`; the
//!    response headers `x-websr-global-version`, `x-websr-model-sha256` and `ETag` repeat the
//!    version and the SHA-256 of the body. Clients should check the SHA-256 against the round
//!    config.
//! 4. Train locally from the global weights `w_g` (with FedProx add `prox_mu / 2 * ||w - w_g||^2`
//!    to the loss), then compute the delta `d = w_local - w_g` for every tensor. If `clip_norm`
//!    is set, scale the whole delta so that its L2 norm over all tensors is at most `clip_norm`
//!    ([`dp::clip`]).
//! 5. `POST /v1/update` with a safetensors body:
//!    - tensors: exactly the global model's names and shapes, dtype `F32`, finite values,
//!      holding `d` (not the new weights);
//!    - metadata (strings): `base_version` = the `global_version` trained from,
//!      `num_examples` = training examples used (integer, `1..=max_examples`), and optionally
//!      `client_loss` = mean local loss (a finite number).
//!
//!    [`tensors::encode_update`] builds such a body. Answer: `200` [`protocol::Accepted`]
//!    (`accepted`, `client_id`, `base_version`, `global_version`, `round_closed`, `norm`).
//!    Refusals: `401` no or unknown token; `413` body over the limit; `400` malformed or
//!    truncated safetensors, missing/extra tensor, wrong shape or dtype, NaN/Inf, bad metadata
//!    or `num_examples`; `422` norm above `clip_norm`; `403` not selected for this round;
//!    `409` stale or future `base_version`, a second update in the same round, or training
//!    finished.
//! 6. Poll `GET /v1/round` until `global_version` moves on, then repeat from step 3.
//!
//! ## Secure aggregation (`--secure-aggregation`)
//!
//! The server then learns only the *sum* of a round's clipped deltas (SecAgg with SecAgg+'s
//! neighbour graph, [`websr_federated::secagg`]; threat model there) and applies their
//! unweighted mean. `GET /v1/round` adds `secure_aggregation` ([`protocol::SecureAggregation`]:
//! the SecAgg `config` whose `round` is the *session* id, `clip_norm`, `noise_multiplier`,
//! `phase`, `phase_secs`); the field is absent when the mode is off, so older clients parse the
//! config unchanged, and they cannot take part: `POST /v1/update` answers `409` in this mode.
//! Steps 1-4 stay as above (join, be selected, download, train and clip); then, with a fresh
//! `secagg::Client` per session:
//!
//! 5. `POST /v1/secagg/keys` with [`secagg::AdvertiseKeys`](websr_federated::secagg::AdvertiseKeys)
//!    (JSON; `round` = the session id, `client` = your id). Only selected clients; the phase
//!    closes at `target_clients` keys, or at the round deadline with at least
//!    `max(threshold, min_clients)` (below that the deadline is extended).
//! 6. `GET /v1/secagg/keys?session=ID` -> the [`KeyDirectory`](websr_federated::secagg::KeyDirectory);
//!    `POST /v1/secagg/shares` with the `ShareKeys` it yields.
//! 7. `GET /v1/secagg/shares?session=ID` -> your `RoutedShares`; `POST /v1/secagg/masked` with the
//!    masked input as a **binary** body: the session id and your client id (`u64` LE each,
//!    [`protocol::MASKED_HEADER_LEN`] bytes), then one `u32` LE per parameter in layout order
//!    ([`protocol::encode_masked_input`]). Encode the clipped (and, with `noise_multiplier > 0`,
//!    noised: [`protocol::SecureAggregation::noise`]) delta with `config.encoding` first.
//! 8. `GET /v1/secagg/unmask?session=ID` -> the `UnmaskRequest`; `POST /v1/secagg/unmask` with the
//!    `UnmaskResponse`.
//! 9. `GET /v1/secagg/result?session=ID` -> [`protocol::SecAggResult`] (`global_version`,
//!    `survivors`) once the round is committed.
//!
//! Every POST answers `200` [`protocol::SecAggAck`] (`session`, the `phase` now open,
//! `global_version`). A GET of a phase still open answers `425 Too Early` (with `Retry-After`):
//! ask again. Each phase after the keys closes when every member of the previous one answered,
//! or after `phase_secs` if at least the threshold did; otherwise the session fails. Refusals:
//! `400` malformed or invalid message (wrong length, a message naming another client); `403`
//! not a member of the phase; `409` wrong phase, second message, or a session that is not the
//! open one; `410 Gone` the session failed, ended, or was abandoned by a restart (the message
//! says which): `GET /v1/round` and start over in the new session, same version. `404` on all
//! these routes when the mode is off. The sessions live in memory only (documented in
//! `src/state/secagg.rs`): nothing of a session reaches `--state-dir` but the model it
//! produces.
//!
//! `GET /v1/status` ([`protocol::Status`]) and `GET /v1/metrics` ([`protocol::Metrics`]: counters,
//! one record per completed round with its clients, examples, dropped stragglers, mean client
//! loss, delta norm, noise and (epsilon, delta)) need no token. While DP noise is on, the round
//! records leave out everything computed from the updates before the noise (examples, mean
//! client loss, delta norm: see [`dp`]). Every request has a time limit
//! (`--request-timeout-secs`, then `408`).
//!
//! # Rounds
//!
//! See [`state`]: up to `ceil(target * over_selection)` clients are selected; the round closes at
//! `target` accepted updates, or at the deadline with at least `min`; stragglers are dropped
//! and their late updates get `409 stale`. Closing aggregates with the strategy, adds DP noise
//! if configured, applies the server step, and commits the next version to `--state-dir`
//! before the next round opens. A restarted server resumes the open round with every update it
//! had accepted ([`store`]). The weighted means (FedAvg and the server optimizers on top of it)
//! sum each update as it arrives and keep only that sum (`src/state/running_sum.rs`); the
//! coordinate-wise rules and Krum keep every update until the close. In secure-aggregation mode a round closes when its SecAgg session
//! finishes (the mean of the survivors' deltas, with the clients' distributed noise if
//! `--noise-multiplier` is set); a failed session starts the round over on the same version, and
//! a restart abandons the open session.
//!
//! With `--buffered K` (FedBuff, Nguyen et al. 2022; `src/state/buffered.rs`) rounds are
//! asynchronous: no selection cap and no deadline. `GET /v1/round` answers `selected: true` to
//! every client that has not yet sent an update for the current version (`target_clients` is
//! `K`), and `POST /v1/update` takes an update based on any version `b` with staleness
//! `s = global_version - b` up to `--max-staleness` (default 4; older: `409` naming the
//! staleness and the limit). Each accepted update is durable before its reply (the update log
//! of the current version; the body keeps its `base_version`, so a restart restores the buffer
//! with the same staleness). Every `K` accepted updates the server aggregates them with the
//! strategy after scaling each delta by FedBuff's polynomial staleness weight `1 / sqrt(1 + s)`
//! (not renormalised: with FedAvg the step is `sum_i p_i / sqrt(1 + s_i) * d_i`, `p_i` the
//! usual capped example weights), applies the server step and commits the next version
//! (`closed_by: "buffer"`). Refused with `--secure-aggregation` and with `--noise-multiplier`.

pub mod api;
pub mod config;
pub mod error;
pub mod flags;
pub mod state;
pub mod store;
pub mod update_log;

// The wire format, clipping and aggregation rules live in `websr-federated`, shared with the
// clients; re-exported so that `websr_aggregator::tensors` etc. keep naming them.
pub use websr_federated::{dp, protocol, strategy, tensors};

pub use api::{app, spawn_deadline_ticker, AppState};
pub use config::ServerConfig;
pub use error::Error;
pub use flags::Args;
pub use state::Server;
pub use strategy::{Strategy, StrategyConfig, StrategyKind, Update};
