//! Buffered asynchronous rounds (`--buffered K`): FedBuff (Nguyen et al. 2022, "Federated
//! Learning with Buffered Asynchronous Aggregation", AISTATS).
//!
//! There is no selection and no deadline: every joined client may train from the current global
//! version `v` and submit at any time, once per version (`GET /v1/round` answers `selected: true`
//! while the client has no update buffered for `v`). An update may be based on an older version
//! `b`; its *staleness* is `s = v - b`, and it is accepted while `s <= --max-staleness` (an older
//! one gets `409` naming its staleness and the limit; a future `b` is refused as in synchronous
//! rounds). Every accepted update is durable before its reply: it is appended to the update log
//! of `v` (`updates/v{v}.log`), like a synchronous round's.
//!
//! When `K` updates are buffered, the server aggregates them and commits `v + 1` through the
//! synchronous path (`Server::close_round`, `closed_by: "buffer"`): the strategy runs on the
//! buffered deltas, each first scaled by FedBuff's polynomial staleness weight
//!
//! ```text
//! a(s) = 1 / sqrt(1 + s)
//! ```
//!
//! so FedAvg computes `sum_i p_i * a(s_i) * d_i`, with `p_i` the usual capped FedAvg weights
//! (`num_examples`, normalised to sum to 1). As in the paper the factor is **not** renormalised:
//! a buffer of equally stale updates moves the model less than a fresh one (renormalising would
//! cancel the damping exactly then). The server step (`--server-lr`, FedAdam, ...) applies to
//! the result as usual. DP noise (`--noise-multiplier`) and secure aggregation are refused with
//! `--buffered` ([`crate::config::ServerConfig::validate`]).
//!
//! Restarts: the log of `v` holds the buffered updates, and each body carries its own
//! `base_version`, so a resume recomputes every staleness against `v` exactly as it was when the
//! update was accepted (the log of `v` only ever receives updates while `v` is current) and
//! scales it again. An update whose write raced with the commit of `v + 1` is written again to
//! the new version's log (if still fresh enough) before it is acknowledged, so no acknowledged
//! update is left only in a pruned log.

use super::{Inner, Server};
use crate::config::BufferedSettings;
use crate::error::Error;
pub use websr_federated::strategy::staleness::staleness_weight;

/// The version check of an update based on `base` while `current` is the global version; returns
/// its staleness. Synchronous rounds (`buffered` = `None`) take only `base == current`.
pub(super) fn check_base(
    buffered: Option<BufferedSettings>,
    base: u64,
    current: u64,
) -> Result<u64, Error> {
    if base > current {
        return Err(Error::FutureVersion { got: base, current });
    }
    let staleness = current - base;
    match buffered {
        None if staleness > 0 => Err(Error::Stale { got: base, current }),
        Some(b) if staleness > b.max_staleness => Err(Error::TooStale {
            got: base,
            current,
            staleness,
            max: b.max_staleness,
        }),
        _ => Ok(staleness),
    }
}

/// Scales a delta by its staleness weight, once, as it enters the buffer (on acceptance and
/// again on resume, from the body as received).
pub(super) use websr_federated::strategy::staleness::scale_for_staleness;

impl Server {
    /// How a round closed when its buffer (or target) filled up.
    pub(super) fn full_reason(&self) -> &'static str {
        if self.config.buffered.is_some() {
            "buffer"
        } else {
            "target"
        }
    }

    /// Whether an update of `base` whose write finished after the version moved on may be
    /// written again to the current version's log.
    pub(super) fn may_rebuffer(&self, inner: &Inner, base: u64) -> bool {
        !self.finished(inner) && check_base(self.config.buffered, base, inner.version).is_ok()
    }

    /// The buffered mode's tick: no deadline; a full buffer whose aggregation failed earlier is
    /// retried.
    pub(super) fn buffered_tick(&self, inner: &mut Inner, now: u64) -> Result<bool, Error> {
        if self.finished(inner) || inner.accepted.len() < self.config.close_at() {
            return Ok(false);
        }
        self.close_round(inner, now, "buffer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staleness_check_and_weight() {
        let b = Some(BufferedSettings {
            k: 3,
            max_staleness: 2,
        });
        assert_eq!(check_base(None, 5, 5).unwrap(), 0);
        assert!(matches!(check_base(None, 4, 5), Err(Error::Stale { .. })));
        assert!(matches!(
            check_base(None, 6, 5),
            Err(Error::FutureVersion { .. })
        ));
        assert_eq!(check_base(b, 3, 5).unwrap(), 2);
        assert!(matches!(
            check_base(b, 2, 5),
            Err(Error::TooStale {
                staleness: 3,
                max: 2,
                ..
            })
        ));
        assert!(matches!(
            check_base(b, 6, 5),
            Err(Error::FutureVersion { .. })
        ));
        assert_eq!(staleness_weight(0), 1.0);
        assert!((staleness_weight(3) - 0.5).abs() < 1e-12);
    }
}
