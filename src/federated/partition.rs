//! Splitting training images across simulated clients, non-IID by degradation kind.
//!
//! Each image is given one base kind (clean, blur, noise, JPEG; a quarter of the images each,
//! at random). The images of every kind are then spread over the clients with proportions drawn
//! from a symmetric Dirichlet(alpha): the label-skew partition of Hsu et al. (2019) with the
//! degradation kind as the label, as the federated blind-SR paper prescribes (methods.md §5).
//! Small alpha (0.1) leaves most clients with essentially one kind; large alpha (100) makes
//! every client hold all four kinds equally (IID).

use crate::degrade::Kind;
use crate::error::{Result, WebSrError};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, Gamma};

/// One client's share: `(image index, base kind)` pairs.
pub type Share = Vec<(usize, Kind)>;

/// Draws a Dirichlet partition of `num_images` images over `num_clients` clients. Draws are
/// repeated (up to 1000 times) until every client holds at least `min_images`.
pub fn dirichlet_partition(
    num_images: usize,
    num_clients: usize,
    alpha: f64,
    min_images: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Share>> {
    if num_clients == 0 || !(alpha.is_finite() && alpha > 0.0) {
        return Err(WebSrError::Invalid(format!(
            "need at least one client and alpha > 0 (got {num_clients} clients, alpha {alpha})"
        )));
    }
    if num_images < num_clients * min_images.max(1) {
        return Err(WebSrError::Invalid(format!(
            "{num_images} images cannot give {num_clients} clients {} images each",
            min_images.max(1)
        )));
    }
    let gamma = Gamma::new(alpha, 1.0)
        .map_err(|e| WebSrError::Invalid(format!("Dirichlet alpha {alpha}: {e}")))?;
    let mut order: Vec<usize> = (0..num_images).collect();
    order.shuffle(rng);
    let by_kind: Vec<Vec<usize>> = (0..Kind::ALL.len())
        .map(|k| {
            order
                .iter()
                .copied()
                .skip(k)
                .step_by(Kind::ALL.len())
                .collect()
        })
        .collect();
    for _ in 0..1000 {
        let mut shares: Vec<Share> = vec![Vec::new(); num_clients];
        for (kind, images) in Kind::ALL.iter().zip(&by_kind) {
            let p = dirichlet(&gamma, num_clients, rng);
            let mut start = 0usize;
            let mut cumulative = 0.0;
            for (client, share) in shares.iter_mut().enumerate() {
                cumulative += p[client];
                let end = if client + 1 == num_clients {
                    images.len()
                } else {
                    ((cumulative * images.len() as f64).round() as usize).clamp(start, images.len())
                };
                share.extend(images[start..end].iter().map(|&i| (i, *kind)));
                start = end;
            }
        }
        if shares.iter().all(|s| s.len() >= min_images.max(1)) {
            return Ok(shares);
        }
    }
    Err(WebSrError::Invalid(format!(
        "no Dirichlet({alpha}) draw gave each of {num_clients} clients {} of {num_images} \
         images; use fewer clients or a larger alpha",
        min_images.max(1)
    )))
}

/// Proportions from a symmetric Dirichlet: normalised Gamma(alpha, 1) draws.
fn dirichlet(gamma: &Gamma<f64>, n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut g: Vec<f64> = (0..n).map(|_| gamma.sample(rng)).collect();
    let total: f64 = g.iter().sum();
    if total > 0.0 && total.is_finite() {
        g.iter_mut().for_each(|x| *x /= total);
    } else {
        // Every draw underflowed (tiny alpha): all the mass on one client.
        g.iter_mut().for_each(|x| *x = 0.0);
        g[rng.random_range(0..n)] = 1.0;
    }
    g
}

/// How many images of each kind a share holds, in [`Kind::ALL`] order.
pub fn kind_counts(share: &Share) -> [usize; 4] {
    let mut counts = [0; 4];
    for (_, kind) in share {
        counts[Kind::ALL.iter().position(|k| k == kind).expect("a kind")] += 1;
    }
    counts
}
