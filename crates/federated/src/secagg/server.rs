//! The server side of one round, as a state machine without I/O: `receive_*` takes one client's
//! message (an `Err` refuses that message only), `close_*` ends a step and returns what to send
//! next. A `close_*` or [`Server::finish`] that finds fewer than `t` clients, or fewer than `t`
//! shares of a secret it must rebuild, fails the whole round: every later call answers
//! [`SecAggError::Aborted`], and no sum comes out.
//!
//! ```text
//! receive_keys*     close_keys    -> KeyDirectory        (to every participant, U1)
//! receive_shares*   close_shares  -> Vec<RoutedShares>   (one to each member of U2)
//! receive_masked*   close_masked  -> UnmaskRequest       (to every member of U3)
//! receive_unmask*   finish        -> Aggregate           (the sum over U3)
//! ```

use super::graph;
use super::keys::{self, KeyPair};
use super::masks::{self, Sign};
use super::messages::{
    AdvertiseKeys, Aggregate, EncryptedShare, KeyDirectory, MaskedInput, PublicKeys, RevealedShare,
    RoutedShares, ShareKeys, UnmaskRequest, UnmaskResponse,
};
use super::shamir::{self, Share};
use super::{SecAggConfig, SecAggError};
use crate::protocol::ClientId;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Keys,
    Shares,
    Masked,
    Unmask,
    Done,
    Failed(String),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Keys => "collecting keys",
            Phase::Shares => "collecting shares",
            Phase::Masked => "collecting masked inputs",
            Phase::Unmask => "collecting unmasking responses",
            Phase::Done => "done",
            Phase::Failed(_) => "failed",
        }
    }
}

/// The aggregator's part in one round.
pub struct Server {
    config: SecAggConfig,
    phase: Phase,
    keys: BTreeMap<ClientId, PublicKeys>,
    /// `U1`, sorted.
    participants: Vec<ClientId>,
    shares: BTreeMap<ClientId, Vec<EncryptedShare>>,
    /// The self-mask commitments of `U2`.
    commitments: BTreeMap<ClientId, [u8; 32]>,
    /// `U2`, sorted.
    sharers: Vec<ClientId>,
    /// `U3` so far, and the running ring sum of their masked inputs.
    masked: BTreeSet<ClientId>,
    sum: Vec<u32>,
    survivors: Vec<ClientId>,
    dropped: Vec<ClientId>,
    responses: BTreeMap<ClientId, UnmaskResponse>,
}

impl Server {
    pub fn new(config: SecAggConfig) -> Result<Self, SecAggError> {
        config.validate()?;
        let sum = vec![0; config.vector_len];
        Ok(Self {
            config,
            phase: Phase::Keys,
            keys: BTreeMap::new(),
            participants: Vec::new(),
            shares: BTreeMap::new(),
            commitments: BTreeMap::new(),
            sharers: Vec::new(),
            masked: BTreeSet::new(),
            sum,
            survivors: Vec::new(),
            dropped: Vec::new(),
            responses: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &SecAggConfig {
        &self.config
    }

    /// The phase, in words (for logs and status pages).
    pub fn phase(&self) -> &'static str {
        self.phase.name()
    }

    /// `U1`: who advertised keys (empty before [`close_keys`](Self::close_keys)).
    pub fn participants(&self) -> &[ClientId] {
        &self.participants
    }

    /// `U2`: who sent shares (empty before [`close_shares`](Self::close_shares)).
    pub fn sharers(&self) -> &[ClientId] {
        &self.sharers
    }

    /// `U3`: whose masked input arrived (empty before [`close_masked`](Self::close_masked)).
    pub fn survivors(&self) -> &[ClientId] {
        &self.survivors
    }

    fn enter(&self, expected: Phase, call: &'static str) -> Result<(), SecAggError> {
        match &self.phase {
            Phase::Failed(reason) => Err(SecAggError::Aborted(reason.clone())),
            p if *p == expected => Ok(()),
            p => Err(SecAggError::OutOfOrder {
                call,
                state: p.name(),
            }),
        }
    }

    fn check_round(&self, round: u64) -> Result<(), SecAggError> {
        self.config.check_round(round)
    }

    /// Ends the round with `e`: nothing more is accepted and no sum is returned.
    fn fail(&mut self, e: SecAggError) -> SecAggError {
        self.phase = Phase::Failed(e.to_string());
        self.shares.clear();
        self.sum.clear();
        self.responses.clear();
        e
    }

    fn at_least_t(&mut self, got: usize, step: &'static str) -> Result<(), SecAggError> {
        if got < self.config.threshold {
            return Err(self.fail(SecAggError::TooFewClients {
                round: self.config.round,
                step,
                got,
                threshold: self.config.threshold,
            }));
        }
        Ok(())
    }

    fn holders(&self, owner: ClientId) -> Result<Vec<ClientId>, SecAggError> {
        graph::holders(&self.participants, owner, self.config.neighbours)
    }

    /// Step 0: one client's public keys.
    pub fn receive_keys(&mut self, msg: AdvertiseKeys) -> Result<(), SecAggError> {
        self.enter(Phase::Keys, "receive_keys")?;
        self.check_round(msg.round)?;
        if self.keys.contains_key(&msg.client) {
            return Err(SecAggError::Duplicate(msg.client));
        }
        self.keys.insert(
            msg.client,
            PublicKeys {
                client: msg.client,
                cipher_public: msg.cipher_public,
                mask_public: msg.mask_public,
            },
        );
        Ok(())
    }

    /// Ends step 0: the participants `U1` and their keys, for every one of them.
    pub fn close_keys(&mut self) -> Result<KeyDirectory, SecAggError> {
        self.enter(Phase::Keys, "close_keys")?;
        if let Err(e) = self
            .config
            .check_participants(self.keys.len(), "advertise keys")
        {
            return Err(self.fail(e));
        }
        self.participants = self.keys.keys().copied().collect();
        self.phase = Phase::Shares;
        Ok(KeyDirectory {
            round: self.config.round,
            participants: self.keys.values().cloned().collect(),
        })
    }

    /// Step 1: one client's encrypted shares, exactly one to each of its neighbours.
    pub fn receive_shares(&mut self, msg: ShareKeys) -> Result<(), SecAggError> {
        self.enter(Phase::Shares, "receive_shares")?;
        self.check_round(msg.round)?;
        let from = msg.client;
        if self.participants.binary_search(&from).is_err() {
            return Err(SecAggError::UnknownClient(from));
        }
        if self.shares.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        let expected = graph::neighbours(&self.participants, from, self.config.neighbours)?;
        let mut to: Vec<ClientId> = msg.shares.iter().map(|s| s.to).collect();
        to.sort_unstable();
        if to != expected || msg.shares.iter().any(|s| s.from != from) {
            return Err(SecAggError::Invalid {
                client: from,
                reason: "shares must go to each neighbour exactly once".into(),
            });
        }
        self.commitments.insert(from, msg.self_mask_commitment);
        self.shares.insert(from, msg.shares);
        Ok(())
    }

    /// Ends step 1: `U2` is who sent shares; each member gets the shares the others addressed to
    /// it (sorted by recipient).
    pub fn close_shares(&mut self) -> Result<Vec<RoutedShares>, SecAggError> {
        self.enter(Phase::Shares, "close_shares")?;
        self.at_least_t(self.shares.len(), "share keys")?;
        self.sharers = self.shares.keys().copied().collect();
        let mut routed: BTreeMap<ClientId, Vec<EncryptedShare>> =
            self.sharers.iter().map(|&u| (u, Vec::new())).collect();
        for share in std::mem::take(&mut self.shares).into_values().flatten() {
            if let Some(inbox) = routed.get_mut(&share.to) {
                inbox.push(share);
            }
        }
        self.phase = Phase::Masked;
        Ok(routed
            .into_iter()
            .map(|(client, shares)| RoutedShares {
                round: self.config.round,
                client,
                shares,
            })
            .collect())
    }

    /// Step 2: one client's masked input, added to the running sum.
    pub fn receive_masked(&mut self, msg: MaskedInput) -> Result<(), SecAggError> {
        self.enter(Phase::Masked, "receive_masked")?;
        self.check_round(msg.round)?;
        if self.sharers.binary_search(&msg.client).is_err() {
            return Err(SecAggError::UnknownClient(msg.client));
        }
        if self.masked.contains(&msg.client) {
            return Err(SecAggError::Duplicate(msg.client));
        }
        if msg.values.len() != self.config.vector_len {
            return Err(SecAggError::Length {
                expected: self.config.vector_len,
                got: msg.values.len(),
            });
        }
        for (s, v) in self.sum.iter_mut().zip(&msg.values) {
            *s = s.wrapping_add(*v);
        }
        self.masked.insert(msg.client);
        Ok(())
    }

    /// Ends step 2: `U3` is whose masked input arrived; the request goes to each of them.
    pub fn close_masked(&mut self) -> Result<UnmaskRequest, SecAggError> {
        self.enter(Phase::Masked, "close_masked")?;
        self.at_least_t(self.masked.len(), "masked input")?;
        self.survivors = self.masked.iter().copied().collect();
        self.dropped = self
            .sharers
            .iter()
            .copied()
            .filter(|u| !self.masked.contains(u))
            .collect();
        self.phase = Phase::Unmask;
        Ok(UnmaskRequest {
            round: self.config.round,
            survivors: self.survivors.clone(),
            dropped: self.dropped.clone(),
        })
    }

    /// Step 3: one survivor's revealed shares. Refused if it reveals, for one owner, both shares,
    /// or a share the request did not ask for, or one it cannot hold.
    pub fn receive_unmask(&mut self, msg: UnmaskResponse) -> Result<(), SecAggError> {
        self.enter(Phase::Unmask, "receive_unmask")?;
        self.check_round(msg.round)?;
        let from = msg.client;
        if self.survivors.binary_search(&from).is_err() {
            return Err(SecAggError::UnknownClient(from));
        }
        if self.responses.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        let invalid = |reason: String| SecAggError::Invalid {
            client: from,
            reason,
        };
        let mut owners = BTreeSet::new();
        for (list, allowed, what) in [
            (&msg.self_mask_shares, &self.survivors, "self-mask"),
            (&msg.key_shares, &self.dropped, "mask-key"),
        ] {
            for RevealedShare { owner, share } in list {
                if allowed.binary_search(owner).is_err() {
                    return Err(invalid(format!("a {what} share of client {owner}")));
                }
                if !owners.insert(*owner) {
                    return Err(invalid(format!("two shares of client {owner}")));
                }
                let x = graph::share_point(&self.holders(*owner)?, from);
                if Some(share.x) != x || share.y.len() != 32 {
                    return Err(invalid(format!("a malformed share of client {owner}")));
                }
            }
        }
        self.responses.insert(from, msg);
        Ok(())
    }

    /// Ends the round: rebuilds each survivor's self-mask seed and each dropped client's mask key
    /// from `t` shares, removes those masks, and returns the exact ring sum of the survivors'
    /// encoded inputs. Fails the round if fewer than `t` survivors answered or any secret has
    /// fewer than `t` shares.
    pub fn finish(&mut self) -> Result<Aggregate, SecAggError> {
        self.enter(Phase::Unmask, "finish")?;
        self.at_least_t(self.responses.len(), "unmasking")?;
        match self.unmask() {
            Ok(sum) => {
                self.phase = Phase::Done;
                self.responses.clear();
                Ok(Aggregate {
                    round: self.config.round,
                    survivors: self.survivors.clone(),
                    sum,
                })
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn gather(
        &self,
        owner: ClientId,
        secret: &'static str,
        pick: impl Fn(&UnmaskResponse) -> &Vec<RevealedShare>,
    ) -> Result<Vec<u8>, SecAggError> {
        let shares: Vec<Share> = self
            .responses
            .values()
            .flat_map(|r| pick(r).iter())
            .filter(|r| r.owner == owner)
            .map(|r| r.share.clone())
            .collect();
        let t = self.config.threshold;
        if shares.len() < t {
            return Err(SecAggError::NotEnoughShares {
                round: self.config.round,
                owner,
                secret,
                got: shares.len(),
                threshold: t,
            });
        }
        shamir::reconstruct(&shares, t)
    }

    fn unmask(&self) -> Result<Vec<u32>, SecAggError> {
        let round = self.config.round;
        let mut sum = self.sum.clone();
        for &u in &self.survivors {
            let b = self.gather(u, "self-mask seed", |r| &r.self_mask_shares)?;
            let b: [u8; 32] = b.try_into().expect("shares were checked to be 32 bytes");
            if keys::commit_self_mask(&b, round, u) != self.commitments[&u] {
                return Err(SecAggError::Shamir(format!(
                    "the self-mask seed rebuilt for client {u} does not match its commitment"
                )));
            }
            masks::apply(&mut sum, &keys::self_mask_seed(&b, round, u), Sign::Sub);
        }
        for &v in &self.dropped {
            let sk = self.gather(v, "mask key", |r| &r.key_shares)?;
            let pair = KeyPair::from_secret_bytes(
                sk.try_into().expect("shares were checked to be 32 bytes"),
            );
            if pair.public() != self.keys[&v].mask_public {
                return Err(SecAggError::Shamir(format!(
                    "the mask key rebuilt for client {v} does not match its public key"
                )));
            }
            // Every survivor among v's neighbours masked with v (v was in U2): undo its mask.
            for u in graph::neighbours(&self.participants, v, self.config.neighbours)? {
                if self.survivors.binary_search(&u).is_ok() {
                    let seed = pair.mask_seed(&self.keys[&u].mask_public, round, v, u)?;
                    masks::apply(&mut sum, &seed, masks::pairwise_sign(u, v).flip());
                }
            }
        }
        Ok(sum)
    }
}
