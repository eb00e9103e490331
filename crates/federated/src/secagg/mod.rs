//! Secure aggregation: the server learns the *sum* of a round's client updates and nothing else
//! about any one of them. This is the protocol of Bonawitz et al. 2017 ("Practical Secure
//! Aggregation for Privacy-Preserving Machine Learning", CCS), in its honest-but-curious variant,
//! with the sparse neighbour graph of SecAgg+ (Bell et al. 2020, "Secure Single-Server
//! Aggregation with (Poly)Logarithmic Overhead", CCS).
//!
//! # The protocol
//!
//! Every client clips its delta to L2 norm `C`, optionally adds its share of DP noise
//! ([`DistributedNoise`]), and encodes it into `Z_{2^32}^d` ([`FixedPoint`]), so that the sum of up
//! to `max_clients` encodings cannot wrap. Then, for round `r` with threshold `t`:
//!
//! 0. **Advertise keys.** Client `u` makes two fresh X25519 key pairs, `c_u` (to encrypt shares)
//!    and `s_u` (to seed masks), and sends both public keys. The server closes the step with the
//!    participants `U1` (at least `t`) and sends everyone the [`KeyDirectory`]. The neighbour
//!    graph over `U1` follows from it ([`graph`]): `u`'s neighbours `N(u)` are the `k` (rounded
//!    up to even) nearest ids on the ring of sorted ids, or all of `U1` when `k` is `None`.
//! 1. **Share keys.** `u` draws a self-mask seed `b_u` and Shamir-shares both `b_u` and the secret
//!    half of `s_u` among `N(u)` and itself with threshold `t` ([`shamir`]). The shares for `v`
//!    are encrypted with ChaCha20-Poly1305 under `HKDF(X25519(c_u, c_v), r, u, v)`, with
//!    `(r, u, v)` as associated data, and sent through the server. The server closes the step
//!    with `U2` (who sent shares, at least `t`) and routes to each member of `U2` the shares
//!    addressed to it. (`u` also sends a SHA-256 commitment to `b_u`, against which the server
//!    checks the `b_u` it rebuilds in step 3.)
//! 2. **Masked input.** `u` sends `y_u = x_u + PRG(b_u) + sum_{v in N(u) n U2, v > u} PRG(s_uv)
//!    - sum_{v in N(u) n U2, v < u} PRG(s_uv)` (mod `2^32`), where
//!    `s_uv = HKDF(X25519(s_u, s_v), r, min, max)` and PRG is ChaCha20 ([`masks`]). The pairwise
//!    masks cancel in the sum; the self mask hides `x_u` even if `u`'s pairwise masks are
//!    revealed (because `u` is wrongly thought to have dropped: the reason for double masking).
//!    The server closes the step with `U3` (whose input arrived, at least `t`).
//! 3. **Unmasking.** The server sends `U3` and `U2 \ U3`. For each owner whose shares `u` holds, `u`
//!    reveals the `b` share if the owner is in `U3` and the key share if it is in `U2 \ U3`, and
//!    refuses a request that names an owner in both. From `t` shares per secret the server
//!    rebuilds each survivor's `b_v` (and removes `PRG(b_v)`) and each dropped client's `s_v`
//!    (and removes the masks its surviving neighbours added with it). What is left is exactly
//!    `sum_{u in U3} x_u`, which [`FixedPoint::decode_sum`] turns back into floats.
//!
//! Each step is a state-machine call without I/O ([`Client`], [`Server`]) that takes and returns
//! the serde [`messages`]. A round fails cleanly, with an error naming the step and the counts and
//! without any partial sum, when fewer than `t` clients remain at any step or fewer than `t`
//! shares of a needed secret come back.
//!
//! # Threat model
//!
//! - **Honest-but-curious server**: it follows the protocol (routes shares faithfully, sends the
//!   same [`UnmaskRequest`] to everyone) but tries to learn individual updates from what it sees.
//!   It then learns only the sum over `U3`.
//! - **Up to `t - 1` colluding parties**: any coalition of fewer than `t` clients, with or without
//!   the server, sees fewer than `t` shares of any honest client's secrets and so learns nothing
//!   about the honest clients' inputs beyond their sum (plus, of course, its own inputs).
//! - **Dropouts**: any number of clients may vanish at any step, as long as `t` remain at each
//!   step and each needed secret still has `t` holders among those who answer the unmasking.
//!
//! # What it does NOT protect against
//!
//! - **A malicious server.** Nothing here stops a server that sends different survivor lists to
//!   different clients (the consistency check with signatures of Bonawitz et al.'s active
//!   variant is not implemented), that substitutes public keys in the directory (there is no PKI;
//!   clients only check their own entry), or that simulates clients (Sybils) to reach `t` shares.
//!   Each honest client answers one unmasking request and never reveals both shares of one owner,
//!   which blocks the plain "ask again" attack, not the others.
//! - **Malicious clients.** A client can send any vector in `Z_{2^32}`, including one beyond the
//!   clip bound or one that wraps the sum: the server cannot check norms of masked inputs (there
//!   are no zero-knowledge range proofs), so clipping is only as good as the clients' honesty,
//!   and neither is poisoning (robust aggregation rules such as median or Krum cannot run on a
//!   sum). A client can still derail a round by sending bad shares: each rebuilt mask key is
//!   checked against its public key and each rebuilt self-mask seed against the commitment its
//!   owner sent, so bad shares make the round fail (naming the owner) rather than give a wrong
//!   sum; the server does not try other subsets of shares to get past them.
//! - **What the sum reveals.** The sum itself (and, with two rounds over nearly the same clients,
//!   differences of sums) can leak information; that is what the DP noise is for. With few
//!   survivors the sum is close to one update.
//! - **The sparse graph.** With `k < n - 1`, if the dropped-or-corrupt clients cut the survivors'
//!   graph into pieces, the server learns the sum of each piece. The circulant graph is
//!   `k`-connected (`k` rounded up to even), so this needs at least `k` neighbours of a piece to be
//!   dropped or corrupt; choose `k` well above the expected dropouts. The graph is a fixed
//!   function of the sorted ids, so a server that chooses ids also chooses neighbourhoods.
//! - **Traffic analysis and timing**, and the secrecy of a client's memory: secrets are zeroed on
//!   drop (keys, seeds, plaintexts) but not otherwise guarded.

pub mod client;
pub mod encoding;
pub mod error;
pub mod graph;
pub mod keys;
pub mod masks;
pub mod messages;
pub mod noise;
pub mod participant;
pub mod server;
pub mod shamir;

pub use client::Client;
pub use encoding::FixedPoint;
pub use error::SecAggError;
pub use messages::{
    AdvertiseKeys, Aggregate, EncryptedShare, KeyDirectory, MaskedInput, PublicKeys, RevealedShare,
    RoutedShares, ShareKeys, UnmaskRequest, UnmaskResponse,
};
pub use noise::DistributedNoise;
pub use participant::Participant;
pub use server::Server;

use serde::{Deserialize, Serialize};

/// What every party of a round must agree on; the server announces it with the round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecAggConfig {
    /// The round number: enters every key derivation, so no key or mask is reused across rounds.
    pub round: u64,
    /// `t`: the fewest clients each step may close with, and the number of shares that rebuild
    /// a secret. At least 2; at most the neighbour count plus one.
    pub threshold: usize,
    /// `k`: how many neighbours each client masks with and shares its secrets with (rounded up to
    /// even, capped at `n - 1`). `None`: all pairs, the original protocol.
    pub neighbours: Option<usize>,
    /// Coordinates of every (encoded) input.
    pub vector_len: usize,
    pub encoding: FixedPoint,
}

impl SecAggConfig {
    /// Refuses a message of another round (session).
    pub(crate) fn check_round(&self, round: u64) -> Result<(), SecAggError> {
        if round == self.round {
            Ok(())
        } else {
            Err(SecAggError::WrongRound {
                expected: self.round,
                got: round,
            })
        }
    }

    /// Checks what can be checked before the participants are known.
    pub fn validate(&self) -> Result<(), SecAggError> {
        let bad = |why: String| Err(SecAggError::Config(why));
        if self.threshold < 2 {
            return bad(format!(
                "threshold {} < 2: one share would reveal a secret",
                self.threshold
            ));
        }
        if self.threshold > self.encoding.max_clients() {
            return bad(format!(
                "threshold {} > max_clients {}",
                self.threshold,
                self.encoding.max_clients()
            ));
        }
        if self.neighbours == Some(0) {
            return bad("k = 0 neighbours".into());
        }
        if self.vector_len == 0 {
            return bad("an empty vector".into());
        }
        Ok(())
    }

    /// Checks a round of `n` participants: at least `t`, at most `max_clients`, and a neighbour
    /// count that gives each secret at least `t` and at most 255 holders.
    pub fn check_participants(&self, n: usize, step: &'static str) -> Result<(), SecAggError> {
        if n < self.threshold {
            return Err(SecAggError::TooFewClients {
                round: self.round,
                step,
                got: n,
                threshold: self.threshold,
            });
        }
        if n > self.encoding.max_clients() {
            return Err(SecAggError::Config(format!(
                "{n} participants, the encoding is sized for at most {}",
                self.encoding.max_clients()
            )));
        }
        let holders = graph::degree(n, self.neighbours) + 1;
        if holders < self.threshold {
            return Err(SecAggError::Config(format!(
                "each secret has {holders} holders (k = {:?}, n = {n}), fewer than the threshold {}",
                self.neighbours, self.threshold
            )));
        }
        if holders > 255 {
            return Err(SecAggError::Config(format!(
                "{holders} holders per secret: the GF(2^8) sharing allows 255; lower k"
            )));
        }
        Ok(())
    }
}

impl Aggregate {
    /// The survivors' summed update as floats (see [`FixedPoint::decode_sum`]).
    pub fn decode(&self, encoding: &FixedPoint) -> Result<Vec<f64>, SecAggError> {
        encoding.decode_sum(&self.sum, self.survivors.len())
    }
}
