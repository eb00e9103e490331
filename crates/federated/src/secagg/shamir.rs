//! Shamir secret sharing over GF(2^8), byte by byte (the AES field, `x^8 + x^4 + x^3 + x + 1`).
//!
//! A secret of `L` bytes is split into shares `(x, y)` with `x` in `1..=255` and `y` of `L` bytes:
//! for each byte, a random polynomial of degree `threshold - 1` whose constant term is that byte,
//! evaluated at `x`. Any `threshold` shares with distinct `x` give the secret back by Lagrange
//! interpolation at 0; fewer reveal nothing about it (each byte's polynomial is uniform given
//! fewer than `threshold` points). At most 255 shares per secret.
//!
//! Written here rather than taken from a crate: the crates.io ones we looked at (`sharks`,
//! `blahaj`) pin rand 0.8, and the whole thing is a few dozen lines over two tables.

use super::SecAggError;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// One share of a secret: the evaluation point `x` (never 0) and one field element per byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub x: u8,
    pub y: Vec<u8>,
}

/// `EXP[i] = 3^i` (512 entries so that `EXP[log a + log b]` needs no reduction), `LOG[3^i] = i`.
const TABLES: ([u8; 512], [u8; 256]) = tables();

const fn tables() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        // x *= 3, i.e. x ^ (x << 1), reduced by the AES polynomial.
        x ^= x << 1;
        if x & 0x100 != 0 {
            x ^= 0x11b;
        }
        i += 1;
    }
    exp[510] = exp[0];
    exp[511] = exp[1];
    (exp, log)
}

fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    TABLES.0[TABLES.1[a as usize] as usize + TABLES.1[b as usize] as usize]
}

/// `1 / a`, for `a != 0`.
fn inv(a: u8) -> u8 {
    debug_assert_ne!(a, 0);
    TABLES.0[255 - TABLES.1[a as usize] as usize]
}

/// Splits `secret` into one share per point of `xs` (distinct, non-zero), any `threshold` of which
/// recover it.
pub fn split(
    secret: &[u8],
    threshold: usize,
    xs: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Vec<Share>, SecAggError> {
    if threshold == 0 || threshold > xs.len() {
        return Err(SecAggError::Shamir(format!(
            "threshold {threshold} with {} shares",
            xs.len()
        )));
    }
    check_points(xs.iter().copied())?;
    let mut shares: Vec<Share> = xs
        .iter()
        .map(|&x| Share {
            x,
            y: Vec::with_capacity(secret.len()),
        })
        .collect();
    let mut coeffs = vec![0u8; threshold];
    for &byte in secret {
        coeffs[0] = byte;
        rng.fill_bytes(&mut coeffs[1..]);
        for share in &mut shares {
            // Horner: ((c_{t-1} x + c_{t-2}) x + ...) x + c_0.
            let y = coeffs
                .iter()
                .rev()
                .fold(0u8, |acc, &c| mul(acc, share.x) ^ c);
            share.y.push(y);
        }
    }
    coeffs.fill(0);
    Ok(shares)
}

/// Recovers the secret from at least `threshold` shares (the first `threshold` are used).
pub fn reconstruct(shares: &[Share], threshold: usize) -> Result<Vec<u8>, SecAggError> {
    if threshold == 0 || shares.len() < threshold {
        return Err(SecAggError::Shamir(format!(
            "{} shares, {threshold} needed",
            shares.len()
        )));
    }
    let used = &shares[..threshold];
    check_points(used.iter().map(|s| s.x))?;
    let len = used[0].y.len();
    if used.iter().any(|s| s.y.len() != len) {
        return Err(SecAggError::Shamir("shares of different lengths".into()));
    }
    // Lagrange basis at 0: l_i(0) = prod_{j != i} x_j / (x_j - x_i); minus is xor here.
    let weights: Vec<u8> = used
        .iter()
        .enumerate()
        .map(|(i, si)| {
            used.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1u8, |acc, (_, sj)| mul(acc, mul(sj.x, inv(sj.x ^ si.x))))
        })
        .collect();
    Ok((0..len)
        .map(|b| {
            used.iter()
                .zip(&weights)
                .fold(0u8, |acc, (s, &w)| acc ^ mul(w, s.y[b]))
        })
        .collect())
}

fn check_points(xs: impl Iterator<Item = u8>) -> Result<(), SecAggError> {
    let mut seen = [false; 256];
    for x in xs {
        if x == 0 {
            return Err(SecAggError::Shamir("share point x = 0".into()));
        }
        if std::mem::replace(&mut seen[x as usize], true) {
            return Err(SecAggError::Shamir(format!("two shares at x = {x}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn field_tables_are_a_field() {
        // 3 generates the multiplicative group: all 255 powers distinct.
        let mut seen = [false; 256];
        for i in 0..255 {
            let v = TABLES.0[i];
            assert!(v != 0 && !seen[v as usize], "3^{i} = {v} repeats");
            seen[v as usize] = true;
        }
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a = {a}");
        }
        // A known AES product: 0x57 * 0x83 = 0xc1 (FIPS-197, 4.2).
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
    }

    #[test]
    fn any_threshold_subset_recovers() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret: Vec<u8> = (0..32).map(|_| rng.random()).collect();
        let xs: Vec<u8> = (1..=7).collect();
        let shares = split(&secret, 4, &xs, &mut rng).unwrap();
        // Every 4-subset of the 7 shares, in a scrambled order.
        for mask in 0u32..128 {
            if mask.count_ones() != 4 {
                continue;
            }
            let mut subset: Vec<Share> = (0..7)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| shares[i].clone())
                .collect();
            subset.reverse();
            assert_eq!(reconstruct(&subset, 4).unwrap(), secret, "subset {mask:b}");
        }
    }

    #[test]
    fn fewer_than_threshold_shares_give_the_wrong_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let secret = [7u8; 32];
        let shares = split(&secret, 3, &[1, 2, 3, 4], &mut rng).unwrap();
        assert!(reconstruct(&shares[..2], 3).is_err());
        // Interpolating 2 points of a degree-2 polynomial does not give its constant term.
        assert_ne!(reconstruct(&shares[..2], 2).unwrap(), secret.to_vec());
    }

    #[test]
    fn shares_below_threshold_are_uniform() {
        // With threshold 2 one share of a fixed byte is uniform over many splittings.
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut counts = [0u32; 256];
        for _ in 0..256 * 64 {
            let s = split(&[0x42], 2, &[5, 9], &mut rng).unwrap();
            counts[s[0].y[0] as usize] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - 64.0).powi(2) / 64.0)
            .sum();
        // 255 degrees of freedom: the 99.99th percentile is about 346.
        assert!(chi2 < 346.0, "chi2 = {chi2}");
    }

    #[test]
    fn refuses_bad_points_and_thresholds() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        assert!(split(b"k", 2, &[1, 1], &mut rng).is_err());
        assert!(split(b"k", 2, &[0, 1], &mut rng).is_err());
        assert!(split(b"k", 3, &[1, 2], &mut rng).is_err());
        assert!(split(b"k", 0, &[1, 2], &mut rng).is_err());
        let s = split(b"k", 2, &[1, 2], &mut rng).unwrap();
        assert!(reconstruct(&[s[0].clone(), s[0].clone()], 2).is_err());
    }
}
