//! The SecAgg+ neighbour graph: who masks with whom, and who holds whose shares.
//!
//! Over the round's participants sorted by id, `u` at position `i` is joined to the positions
//! `i +- 1, ..., i +- ceil(k/2)` (mod `n`): a Harary-style circulant graph, `2 ceil(k/2)`-regular
//! and `2 ceil(k/2)`-connected. When that reaches `n - 1` (in particular `k = None`) every pair is
//! joined, which is the original protocol of Bonawitz et al. Unlike Bell et al.'s random graph,
//! this one is a fixed function of the sorted ids, so every party computes it alone.

use super::SecAggError;
use crate::protocol::ClientId;

/// The number of neighbours of each of `n` participants for a requested `k` (`None` = all pairs).
pub fn degree(n: usize, k: Option<usize>) -> usize {
    let all = n.saturating_sub(1);
    match k {
        None => all,
        Some(k) => k.div_ceil(2).saturating_mul(2).min(all),
    }
}

/// `me`'s neighbours among `participants` (sorted, distinct), sorted by id; `me` not included.
pub fn neighbours(
    participants: &[ClientId],
    me: ClientId,
    k: Option<usize>,
) -> Result<Vec<ClientId>, SecAggError> {
    let n = participants.len();
    let i = participants
        .binary_search(&me)
        .map_err(|_| SecAggError::UnknownClient(me))?;
    let d = degree(n, k);
    let mut out: Vec<ClientId> = if d == n.saturating_sub(1) {
        participants.iter().copied().filter(|&p| p != me).collect()
    } else {
        (1..=d / 2)
            .flat_map(|off| [participants[(i + off) % n], participants[(i + n - off) % n]])
            .collect()
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Who holds shares of `owner`'s secrets: its neighbours and itself, sorted. The holder at index
/// `j` gets the share at point `x = j + 1`.
pub fn holders(
    participants: &[ClientId],
    owner: ClientId,
    k: Option<usize>,
) -> Result<Vec<ClientId>, SecAggError> {
    let mut h = neighbours(participants, owner, k)?;
    let (Ok(at) | Err(at)) = h.binary_search(&owner);
    h.insert(at, owner);
    h.dedup();
    Ok(h)
}

/// The share point of `holder` among `holders` (from [`holders`]), if it is one.
pub fn share_point(holders: &[ClientId], holder: ClientId) -> Option<u8> {
    holders
        .binary_search(&holder)
        .ok()
        .and_then(|j| u8::try_from(j + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<ClientId> {
        (0..n).map(|i| 10 + 3 * i).collect()
    }

    #[test]
    fn graph_is_symmetric_and_regular() {
        for n in 2..20u64 {
            let p = ids(n);
            for k in [Some(1), Some(2), Some(3), Some(4), Some(6), None] {
                let d = degree(p.len(), k);
                for &u in &p {
                    let nu = neighbours(&p, u, k).unwrap();
                    assert_eq!(nu.len(), d, "n {n} k {k:?} u {u}");
                    assert!(!nu.contains(&u));
                    for &v in &nu {
                        assert!(neighbours(&p, v, k).unwrap().contains(&u), "n {n} k {k:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn all_pairs_when_k_is_large() {
        let p = ids(5);
        assert_eq!(degree(5, None), 4);
        assert_eq!(degree(5, Some(4)), 4);
        assert_eq!(degree(5, Some(100)), 4);
        assert_eq!(degree(9, Some(3)), 4);
        assert_eq!(neighbours(&p, p[0], Some(7)).unwrap(), p[1..].to_vec());
    }

    #[test]
    fn holders_include_the_owner_with_points_from_one() {
        let p = ids(8);
        let h = holders(&p, p[0], Some(2)).unwrap();
        assert_eq!(h, vec![p[0], p[1], p[7]]);
        assert_eq!(share_point(&h, p[0]), Some(1));
        assert_eq!(share_point(&h, p[7]), Some(3));
        assert_eq!(share_point(&h, p[4]), None);
        assert!(neighbours(&p, 11, None).is_err());
    }
}
