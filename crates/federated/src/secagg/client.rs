//! The client side of one round, as a state machine without I/O: each call takes the server's
//! last message and returns the next one to send.
//!
//! ```text
//! Client::new            -> AdvertiseKeys
//! share_keys(directory)  -> ShareKeys
//! masked_input(routed)   -> MaskedInput
//! unmask(request)        -> UnmaskResponse      (at most once; then the client is done)
//! ```
//!
//! Any error ends the client's part in the round (it counts as a dropout): only a call made out of
//! order leaves the state as it was.

use super::graph;
use super::keys::{self, KeyPair, Secret32};
use super::masks::{self, Sign};
use super::messages::{
    AdvertiseKeys, EncryptedShare, KeyDirectory, MaskedInput, PublicKeys, RevealedShare,
    RoutedShares, ShareKeys, UnmaskRequest, UnmaskResponse,
};
use super::shamir::{self, Share};
use super::{SecAggConfig, SecAggError};
use crate::protocol::ClientId;
use rand::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// Bytes of a share plaintext: the point `x`, then the mask-key share, then the self-mask share.
const SHARE_PLAINTEXT: usize = 1 + 32 + 32;

/// One client's part in one round. Holds this round's secrets (zeroed on drop).
pub struct Client {
    config: SecAggConfig,
    id: ClientId,
    state: State,
}

/// The two shares a holder keeps of one owner's secrets.
struct Held {
    key: Share,
    self_mask: Share,
}

struct Shared {
    cipher: KeyPair,
    mask: KeyPair,
    self_seed: Secret32,
    keys: BTreeMap<ClientId, PublicKeys>,
    participants: Vec<ClientId>,
    neighbours: Vec<ClientId>,
    own: Held,
}

struct Masked {
    participants: Vec<ClientId>,
    /// Shares held per owner: the neighbours whose shares arrived (they are in `U2`), and self.
    held: BTreeMap<ClientId, Held>,
}

enum State {
    Advertised { cipher: KeyPair, mask: KeyPair },
    Shared(Box<Shared>),
    Masked(Box<Masked>),
    Answered,
    Aborted,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Advertised { .. } => "keys advertised",
            State::Shared(_) => "shares sent",
            State::Masked(_) => "masked input sent",
            State::Answered => "unmasking answered",
            State::Aborted => "aborted",
        }
    }
}

impl Client {
    /// Joins round `config.round` as `id`: draws the round's two key pairs from `rng`.
    pub fn new(
        config: SecAggConfig,
        id: ClientId,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Self, AdvertiseKeys), SecAggError> {
        config.validate()?;
        let cipher = KeyPair::generate(rng);
        let mask = KeyPair::generate(rng);
        let msg = AdvertiseKeys {
            round: config.round,
            client: id,
            cipher_public: cipher.public(),
            mask_public: mask.public(),
        };
        let client = Self {
            config,
            id,
            state: State::Advertised { cipher, mask },
        };
        Ok((client, msg))
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    pub fn config(&self) -> &SecAggConfig {
        &self.config
    }

    /// The state, in words (for logs).
    pub fn state(&self) -> &'static str {
        self.state.name()
    }

    fn out_of_order(&self, call: &'static str) -> SecAggError {
        SecAggError::OutOfOrder {
            call,
            state: self.state.name(),
        }
    }

    fn check_round(&self, round: u64) -> Result<(), SecAggError> {
        self.config.check_round(round)
    }

    /// Step 1: given the round's participants, secret-shares the mask secret key and a fresh
    /// self-mask seed among this client and its neighbours (threshold `t`), and encrypts each
    /// neighbour's pair of shares to it.
    pub fn share_keys(
        &mut self,
        directory: &KeyDirectory,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<ShareKeys, SecAggError> {
        if !matches!(self.state, State::Advertised { .. }) {
            return Err(self.out_of_order("share_keys"));
        }
        let State::Advertised { cipher, mask } = std::mem::replace(&mut self.state, State::Aborted)
        else {
            unreachable!("checked above");
        };
        let (msg, shared) = self.make_shares(directory, cipher, mask, rng)?;
        self.state = State::Shared(Box::new(shared));
        Ok(msg)
    }

    fn make_shares(
        &self,
        directory: &KeyDirectory,
        cipher: KeyPair,
        mask: KeyPair,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(ShareKeys, Shared), SecAggError> {
        let c = &self.config;
        self.check_round(directory.round)?;
        let participants: Vec<ClientId> = directory.participants.iter().map(|p| p.client).collect();
        if participants.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SecAggError::BadRequest(
                "the key directory is not sorted by distinct ids".into(),
            ));
        }
        let mine = directory.participants.iter().find(|p| p.client == self.id);
        if mine.map(|p| (p.cipher_public, p.mask_public)) != Some((cipher.public(), mask.public()))
        {
            return Err(SecAggError::BadRequest(
                "the key directory does not hold this client's keys".into(),
            ));
        }
        c.check_participants(participants.len(), "share keys")?;
        let holders = graph::holders(&participants, self.id, c.neighbours)?;
        let neighbours: Vec<ClientId> = holders.iter().copied().filter(|&h| h != self.id).collect();
        let keys: BTreeMap<ClientId, PublicKeys> = directory
            .participants
            .iter()
            .map(|p| (p.client, p.clone()))
            .collect();

        let mut self_seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(self_seed.as_mut());
        let xs: Vec<u8> = (1..=holders.len())
            .map(|x| u8::try_from(x).expect("checked by check_participants"))
            .collect();
        let key_shares = shamir::split(mask.secret_bytes().as_ref(), c.threshold, &xs, rng)?;
        let seed_shares = shamir::split(self_seed.as_ref(), c.threshold, &xs, rng)?;

        let mut own = None;
        let mut out = Vec::with_capacity(neighbours.len());
        for ((&to, key), self_mask) in holders.iter().zip(key_shares).zip(seed_shares) {
            if to == self.id {
                own = Some(Held { key, self_mask });
                continue;
            }
            let mut plain = Zeroizing::new(Vec::with_capacity(SHARE_PLAINTEXT));
            plain.push(key.x);
            plain.extend_from_slice(&key.y);
            plain.extend_from_slice(&self_mask.y);
            let k = cipher.share_key(&keys[&to].cipher_public, to, c.round, self.id, to)?;
            out.push(EncryptedShare {
                from: self.id,
                to,
                ciphertext: keys::seal(&k, c.round, self.id, to, &plain),
            });
        }
        let msg = ShareKeys {
            round: c.round,
            client: self.id,
            shares: out,
            self_mask_commitment: keys::commit_self_mask(&self_seed, c.round, self.id),
        };
        let shared = Shared {
            cipher,
            mask,
            self_seed,
            keys,
            participants,
            neighbours,
            own: own.expect("the owner is one of its holders"),
        };
        Ok((msg, shared))
    }

    /// Step 2: decrypts the shares routed to this client (their senders are the neighbours still
    /// in the round) and masks `encoded` (from [`FixedPoint::encode`](super::FixedPoint::encode))
    /// with the self mask and one pairwise mask per such neighbour.
    pub fn masked_input(
        &mut self,
        routed: &RoutedShares,
        encoded: &[u32],
    ) -> Result<MaskedInput, SecAggError> {
        if !matches!(self.state, State::Shared(_)) {
            return Err(self.out_of_order("masked_input"));
        }
        let State::Shared(shared) = std::mem::replace(&mut self.state, State::Aborted) else {
            unreachable!("checked above");
        };
        let (msg, masked) = self.mask(*shared, routed, encoded)?;
        self.state = State::Masked(Box::new(masked));
        Ok(msg)
    }

    fn mask(
        &self,
        s: Shared,
        routed: &RoutedShares,
        encoded: &[u32],
    ) -> Result<(MaskedInput, Masked), SecAggError> {
        let c = &self.config;
        self.check_round(routed.round)?;
        if routed.client != self.id {
            return Err(SecAggError::BadRequest(format!(
                "shares routed to client {}, this is client {}",
                routed.client, self.id
            )));
        }
        if encoded.len() != c.vector_len {
            return Err(SecAggError::Length {
                expected: c.vector_len,
                got: encoded.len(),
            });
        }
        let mut held = BTreeMap::new();
        for e in &routed.shares {
            if e.to != self.id || s.neighbours.binary_search(&e.from).is_err() {
                return Err(SecAggError::BadRequest(format!(
                    "a share from client {} to client {} was routed to client {}",
                    e.from, e.to, self.id
                )));
            }
            if held.contains_key(&e.from) {
                return Err(SecAggError::Duplicate(e.from));
            }
            let k = s.cipher.share_key(
                &s.keys[&e.from].cipher_public,
                e.from,
                c.round,
                e.from,
                self.id,
            )?;
            let plain = keys::open(&k, c.round, e.from, self.id, &e.ciphertext)?;
            let their_holders = graph::holders(&s.participants, e.from, c.neighbours)?;
            let x = graph::share_point(&their_holders, self.id);
            if plain.len() != SHARE_PLAINTEXT || Some(plain[0]) != x {
                return Err(SecAggError::Invalid {
                    client: e.from,
                    reason: "malformed share plaintext".into(),
                });
            }
            let share = |range: std::ops::Range<usize>| Share {
                x: plain[0],
                y: plain[range].to_vec(),
            };
            held.insert(
                e.from,
                Held {
                    key: share(1..33),
                    self_mask: share(33..65),
                },
            );
        }
        // Our own secrets can only come back if t holders (ourself included) are still here.
        if held.len() + 1 < c.threshold {
            return Err(SecAggError::TooFewClients {
                round: c.round,
                step: "masked input",
                got: held.len() + 1,
                threshold: c.threshold,
            });
        }
        let mut values = encoded.to_vec();
        let seed = keys::self_mask_seed(&s.self_seed, c.round, self.id);
        masks::apply(&mut values, &seed, Sign::Add);
        for &v in held.keys() {
            let seed = s
                .mask
                .mask_seed(&s.keys[&v].mask_public, c.round, self.id, v)?;
            masks::apply(&mut values, &seed, masks::pairwise_sign(self.id, v));
        }
        held.insert(self.id, s.own);
        let msg = MaskedInput {
            round: c.round,
            client: self.id,
            values,
        };
        let masked = Masked {
            participants: s.participants,
            held,
        };
        Ok((msg, masked))
    }

    /// Step 3: for each owner whose shares this client holds, reveals the self-mask share if the
    /// request lists the owner as a survivor, the mask-key share if it lists it as dropped, and
    /// nothing otherwise. Refuses a request that names one owner in both lists, that does not list
    /// this client as a survivor, that has fewer than `t` survivors, or that names a neighbour
    /// whose shares never arrived (it cannot be in `U2`); answers at most once.
    pub fn unmask(&mut self, request: &UnmaskRequest) -> Result<UnmaskResponse, SecAggError> {
        match self.state {
            State::Masked(_) => {}
            State::Answered => {
                return Err(SecAggError::AlreadyUnmasked {
                    client: self.id,
                    round: self.config.round,
                });
            }
            _ => return Err(self.out_of_order("unmask")),
        }
        // Whatever comes of it, this was the one request the client looks at.
        let State::Masked(m) = std::mem::replace(&mut self.state, State::Answered) else {
            unreachable!("checked above");
        };
        let c = &self.config;
        self.check_round(request.round)?;
        let survivors: BTreeSet<ClientId> = request.survivors.iter().copied().collect();
        let dropped: BTreeSet<ClientId> = request.dropped.iter().copied().collect();
        if let Some(&neighbour) = survivors.intersection(&dropped).next() {
            return Err(SecAggError::BothSharesRequested {
                client: self.id,
                neighbour,
            });
        }
        if !survivors.contains(&self.id) {
            return Err(SecAggError::BadRequest(format!(
                "the unmasking request does not list client {} as a survivor",
                self.id
            )));
        }
        if survivors.len() < c.threshold {
            return Err(SecAggError::TooFewClients {
                round: c.round,
                step: "unmasking",
                got: survivors.len(),
                threshold: c.threshold,
            });
        }
        if let Some(&stranger) = survivors
            .union(&dropped)
            .find(|id| m.participants.binary_search(id).is_err())
        {
            return Err(SecAggError::BadRequest(format!(
                "the unmasking request names client {stranger}, not a participant"
            )));
        }
        // U3 and U2 \ U3 lie within U2: a neighbour named there must have sent us its shares.
        for v in graph::neighbours(&m.participants, self.id, c.neighbours)? {
            if (survivors.contains(&v) || dropped.contains(&v)) && !m.held.contains_key(&v) {
                return Err(SecAggError::BadRequest(format!(
                    "the unmasking request names neighbour {v}, which sent this client no shares"
                )));
            }
        }
        let mut response = UnmaskResponse {
            round: c.round,
            client: self.id,
            self_mask_shares: Vec::new(),
            key_shares: Vec::new(),
        };
        for (&owner, h) in &m.held {
            if survivors.contains(&owner) {
                response.self_mask_shares.push(RevealedShare {
                    owner,
                    share: h.self_mask.clone(),
                });
            } else if dropped.contains(&owner) {
                response.key_shares.push(RevealedShare {
                    owner,
                    share: h.key.clone(),
                });
            }
        }
        Ok(response)
    }
}
