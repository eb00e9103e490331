//! Mask expansion: a 32-byte seed becomes one pseudo-random `u32` per coordinate through ChaCha20
//! (`rand_chacha::ChaCha20Rng`, whose output stream is fixed across platforms and versions, so the
//! browser client and the native server expand the same seed to the same mask).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Whether a mask is added to or subtracted from a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Add,
    Sub,
}

impl Sign {
    pub fn flip(self) -> Self {
        match self {
            Sign::Add => Sign::Sub,
            Sign::Sub => Sign::Add,
        }
    }
}

/// The sign with which client `me` applies its pairwise mask with `other`: `+` when
/// `other > me`, `-` when `other < me`, so that the two cancel in the sum.
pub fn pairwise_sign(me: u64, other: u64) -> Sign {
    if other > me {
        Sign::Add
    } else {
        Sign::Sub
    }
}

/// `acc[i] = acc[i] +- PRG(seed)[i]` in `Z_{2^32}`.
pub fn apply(acc: &mut [u32], seed: &[u8; 32], sign: Sign) {
    let mut prg = ChaCha20Rng::from_seed(*seed);
    let mut buf = [0u8; 4096];
    for chunk in acc.chunks_mut(buf.len() / 4) {
        let bytes = &mut buf[..chunk.len() * 4];
        prg.fill_bytes(bytes);
        for (x, r) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
            let r = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            *x = match sign {
                Sign::Add => x.wrapping_add(r),
                Sign::Sub => x.wrapping_sub(r),
            };
        }
    }
    buf.fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_sub_is_identity_and_chunks_do_not_matter() {
        let seed = [3u8; 32];
        let orig: Vec<u32> = (0..5000).collect();
        let mut v = orig.clone();
        apply(&mut v, &seed, Sign::Add);
        assert_ne!(v, orig);
        // The same mask expanded in one call or coordinate by coordinate agrees.
        let mut prg = ChaCha20Rng::from_seed(seed);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(x.wrapping_sub(orig[i]), prg.next_u32(), "coordinate {i}");
        }
        apply(&mut v, &seed, Sign::Sub);
        assert_eq!(v, orig);
    }

    #[test]
    fn signs_are_opposite_for_a_pair() {
        assert_eq!(pairwise_sign(1, 2), Sign::Add);
        assert_eq!(pairwise_sign(2, 1), Sign::Sub);
        assert_eq!(pairwise_sign(2, 1), pairwise_sign(1, 2).flip());
    }
}
