//! The messages of one secure-aggregation round, in protocol order. All are plain serde structs,
//! so the aggregator can carry them over HTTP as JSON (a masked input is one `u32` per model
//! parameter: a binary body is the better carrier for that one).

use super::shamir::Share;
use crate::protocol::ClientId;
use serde::{Deserialize, Serialize};

/// Step 0, client -> server: the client's two public keys for this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertiseKeys {
    pub round: u64,
    pub client: ClientId,
    /// X25519 public key whose agreements encrypt shares.
    pub cipher_public: [u8; 32],
    /// X25519 public key whose agreements seed pairwise masks.
    pub mask_public: [u8; 32],
}

/// One entry of the [`KeyDirectory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    pub client: ClientId,
    pub cipher_public: [u8; 32],
    pub mask_public: [u8; 32],
}

/// Step 0, server -> every participant: the participants of the round (`U1`) sorted by id,
/// with their keys. The neighbour graph is a function of this list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDirectory {
    pub round: u64,
    pub participants: Vec<PublicKeys>,
}

/// A share pair (of the mask secret key and of the self-mask seed), encrypted from one client to
/// another; the server only routes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    pub from: ClientId,
    pub to: ClientId,
    pub ciphertext: Vec<u8>,
}

/// Step 1, client -> server: one [`EncryptedShare`] per neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareKeys {
    pub round: u64,
    pub client: ClientId,
    pub shares: Vec<EncryptedShare>,
    /// SHA-256 commitment to the self-mask seed (see [`super::keys::commit_self_mask`]).
    pub self_mask_commitment: [u8; 32],
}

/// Step 1, server -> one client of `U2` (those whose [`ShareKeys`] arrived): the shares addressed
/// to it by the other members of `U2`. The senders are the neighbours it masks with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedShares {
    pub round: u64,
    pub client: ClientId,
    pub shares: Vec<EncryptedShare>,
}

/// Step 2, client -> server: the encoded update plus the client's masks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    pub round: u64,
    pub client: ClientId,
    pub values: Vec<u32>,
}

/// Step 3, server -> every client of `U3`: whose masked input arrived (`survivors`, `U3`) and who
/// shared keys but sent none (`dropped`, `U2 \ U3`). Sorted lists; no id may be in both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    pub round: u64,
    pub survivors: Vec<ClientId>,
    pub dropped: Vec<ClientId>,
}

/// A share of `owner`'s secret revealed by its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedShare {
    pub owner: ClientId,
    pub share: Share,
}

/// Step 3, client -> server: for each neighbour (and itself) the self-mask-seed share if the owner
/// survived, the mask-key share if it dropped; never both for one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskResponse {
    pub round: u64,
    pub client: ClientId,
    pub self_mask_shares: Vec<RevealedShare>,
    pub key_shares: Vec<RevealedShare>,
}

/// The result of a round: the exact ring sum of the survivors' encoded inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub round: u64,
    /// Whose inputs are in `sum` (`U3`), sorted.
    pub survivors: Vec<ClientId>,
    pub sum: Vec<u32>,
}
