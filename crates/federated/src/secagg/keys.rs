//! Key agreement and key derivation: X25519, HKDF-SHA256, ChaCha20-Poly1305.
//!
//! Each client makes two fresh X25519 key pairs per round: a *cipher* pair, whose agreements
//! give the keys that encrypt secret shares between two clients, and a *mask* pair, whose
//! agreements give the seeds of the pairwise masks (and whose secret half is secret-shared so that
//! the masks of a client that drops out can be removed). Every shared secret goes through
//! HKDF-SHA256 with a label, the round, and the two client ids as `info`, so that no two uses share
//! a key.

use super::SecAggError;
use crate::protocol::ClientId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// HKDF salt: the protocol and its version.
const SALT: &[u8] = b"websr-secagg-v1";
const LABEL_MASK: &[u8] = b"pairwise-mask";
const LABEL_SHARE: &[u8] = b"share-encryption";
const LABEL_SELF: &[u8] = b"self-mask";

/// A 32-byte secret (a PRG seed, an AEAD key), zeroed on drop.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// An X25519 key pair. The secret half is zeroed on drop.
pub struct KeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl KeyPair {
    /// A fresh pair from 32 bytes of `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    /// The pair of a secret given as bytes (e.g. one reconstructed from shares).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The secret half as bytes (what gets secret-shared).
    pub fn secret_bytes(&self) -> Secret32 {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// `HKDF(X25519(self, their_public), info = label || round || a || b)`. Refuses a
    /// non-contributory result (a low-order public key), naming `them`.
    fn derive(
        &self,
        their_public: &[u8; 32],
        them: ClientId,
        label: &[u8],
        round: u64,
        a: ClientId,
        b: ClientId,
    ) -> Result<Secret32, SecAggError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return Err(SecAggError::WeakKey(them));
        }
        Ok(hkdf(shared.as_bytes(), label, round, a, b))
    }

    /// The seed of the pairwise mask between `me` (this pair's owner) and `them`: the same on
    /// both sides (the ids enter in increasing order).
    pub fn mask_seed(
        &self,
        their_public: &[u8; 32],
        round: u64,
        me: ClientId,
        them: ClientId,
    ) -> Result<Secret32, SecAggError> {
        let (a, b) = (me.min(them), me.max(them));
        self.derive(their_public, them, LABEL_MASK, round, a, b)
    }

    /// The key that encrypts the shares sent from `from` to `to` (one of them is this pair's
    /// owner). Each direction has its own key, so one key seals exactly one message.
    pub fn share_key(
        &self,
        their_public: &[u8; 32],
        them: ClientId,
        round: u64,
        from: ClientId,
        to: ClientId,
    ) -> Result<Secret32, SecAggError> {
        self.derive(their_public, them, LABEL_SHARE, round, from, to)
    }
}

fn hkdf(ikm: &[u8], label: &[u8], round: u64, a: ClientId, b: ClientId) -> Secret32 {
    let mut info = Vec::with_capacity(label.len() + 24);
    info.extend_from_slice(label);
    info.extend_from_slice(&round.to_le_bytes());
    info.extend_from_slice(&a.to_le_bytes());
    info.extend_from_slice(&b.to_le_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), ikm)
        .expand(&info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// The PRG seed of `owner`'s self mask in `round`, from its secret `b` (a uniform 32-byte string;
/// HKDF only separates domains here).
pub fn self_mask_seed(b: &[u8; 32], round: u64, owner: ClientId) -> Secret32 {
    hkdf(b, LABEL_SELF, round, owner, owner)
}

/// A commitment to `owner`'s self-mask seed `b`, sent with its shares: the server checks the seed it
/// rebuilds against it, so that a bad share makes the round fail instead of giving a wrong sum.
/// (SHA-256 of a uniform 32-byte secret with a label: hiding as far as SHA-256 is a random oracle.)
pub fn commit_self_mask(b: &[u8; 32], round: u64, owner: ClientId) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"websr-secagg-v1 self-mask commitment");
    h.update(round.to_le_bytes());
    h.update(owner.to_le_bytes());
    h.update(b);
    h.finalize().into()
}

fn aad(round: u64, from: ClientId, to: ClientId) -> [u8; 40] {
    let mut a = [0u8; 40];
    a[..16].copy_from_slice(b"websr-secagg-sh1");
    a[16..24].copy_from_slice(&round.to_le_bytes());
    a[24..32].copy_from_slice(&from.to_le_bytes());
    a[32..].copy_from_slice(&to.to_le_bytes());
    a
}

/// ChaCha20-Poly1305 under `key` (used for this one message only, hence the zero nonce), with
/// `(round, from, to)` as associated data.
pub fn seal(key: &[u8; 32], round: u64, from: ClientId, to: ClientId, msg: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg,
                aad: &aad(round, from, to),
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message of a few bytes")
}

/// Opens what [`seal`] made; fails if the key, the ciphertext or `(round, from, to)` differ.
pub fn open(
    key: &[u8; 32],
    round: u64,
    from: ClientId,
    to: ClientId,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecAggError> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: ciphertext,
                aad: &aad(round, from, to),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecAggError::Decrypt { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn both_sides_derive_the_same_seeds_and_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (a, b) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let sa = a.mask_seed(&b.public(), 3, 1, 2).unwrap();
        let sb = b.mask_seed(&a.public(), 3, 2, 1).unwrap();
        assert_eq!(*sa, *sb);
        // Another round, another seed.
        assert_ne!(*sa, *a.mask_seed(&b.public(), 4, 1, 2).unwrap());
        // The two directions of share encryption use different keys.
        let k12 = a.share_key(&b.public(), 2, 3, 1, 2).unwrap();
        let k21 = a.share_key(&b.public(), 2, 3, 2, 1).unwrap();
        assert_eq!(*k12, *b.share_key(&a.public(), 1, 3, 1, 2).unwrap());
        assert_ne!(*k12, *k21);
    }

    #[test]
    fn reconstructed_secret_gives_the_same_pair() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let a = KeyPair::generate(&mut rng);
        let again = KeyPair::from_secret_bytes(*a.secret_bytes());
        assert_eq!(again.public(), a.public());
    }

    #[test]
    fn low_order_public_keys_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let a = KeyPair::generate(&mut rng);
        assert_eq!(
            a.mask_seed(&[0u8; 32], 1, 1, 7).err(),
            Some(SecAggError::WeakKey(7))
        );
    }

    #[test]
    fn sealed_shares_are_bound_to_round_and_direction() {
        let key = [5u8; 32];
        let c = seal(&key, 1, 2, 3, b"share");
        assert_eq!(open(&key, 1, 2, 3, &c).unwrap().as_slice(), b"share");
        assert!(open(&key, 2, 2, 3, &c).is_err());
        assert!(open(&key, 1, 3, 2, &c).is_err());
        assert!(open(&[6u8; 32], 1, 2, 3, &c).is_err());
        let mut bad = c.clone();
        bad[0] ^= 1;
        assert!(open(&key, 1, 2, 3, &bad).is_err());
    }
}
