//! Fixed-point encoding of clipped deltas into the ring `Z_{2^32}` (wrapping `u32` arithmetic).
//!
//! A value `x` with `|x| <= bound` becomes `q = round(x * scale)` stored as two's complement
//! (`q as i32 as u32`), with `scale = floor((2^31 - 1) / max_clients) / bound`. Then
//! `|q| <= floor((2^31 - 1) / max_clients)`, so the sum of up to `max_clients` encodings lies in
//! `[-(2^31 - 1), 2^31 - 1]`: reading the `u32` sum back as an `i32` is exact, there is no wrap to
//! detect because none can happen. Values beyond `bound` and non-finite values are refused.
//!
//! Precision: one step is `bound / floor((2^31 - 1) / max_clients)`, e.g. `4.7e-8 * bound` for
//! 100 clients; the decoded sum is within `num_clients * step / 2` of the float sum.

use super::SecAggError;
use serde::{Deserialize, Serialize};

/// The encoding of one round, shared by every client and the server (part of
/// [`SecAggConfig`](super::SecAggConfig)). Build it with [`FixedPoint::for_bound`] or
/// [`FixedPoint::for_clip_norm`]; a deserialised one is validated the same way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFixedPoint", into = "RawFixedPoint")]
pub struct FixedPoint {
    bound: f64,
    max_clients: usize,
}

#[derive(Serialize, Deserialize)]
struct RawFixedPoint {
    bound: f64,
    max_clients: usize,
}

impl TryFrom<RawFixedPoint> for FixedPoint {
    type Error = SecAggError;
    fn try_from(r: RawFixedPoint) -> Result<Self, SecAggError> {
        FixedPoint::for_bound(r.bound, r.max_clients)
    }
}

impl From<FixedPoint> for RawFixedPoint {
    fn from(f: FixedPoint) -> Self {
        RawFixedPoint {
            bound: f.bound,
            max_clients: f.max_clients,
        }
    }
}

impl FixedPoint {
    /// Every coordinate in `[-bound, bound]`, sums of at most `max_clients` vectors.
    pub fn for_bound(bound: f64, max_clients: usize) -> Result<Self, SecAggError> {
        if !(bound.is_finite() && bound > 0.0) {
            return Err(SecAggError::Config(format!(
                "the encoding bound must be finite and > 0, got {bound}"
            )));
        }
        if max_clients == 0 || max_clients > i32::MAX as usize {
            return Err(SecAggError::Config(format!(
                "max_clients must be in 1..=2^31-1, got {max_clients}"
            )));
        }
        Ok(Self { bound, max_clients })
    }

    /// For a delta clipped to L2 norm `clip_norm` (every coordinate then lies in `[-C, C]`), with
    /// the same relative slack as the server's norm check ([`crate::dp::NORM_TOLERANCE`]), so
    /// that whatever [`crate::dp::clip`] returns always encodes.
    pub fn for_clip_norm(clip_norm: f64, max_clients: usize) -> Result<Self, SecAggError> {
        Self::for_bound(clip_norm * (1.0 + crate::dp::NORM_TOLERANCE), max_clients)
    }

    /// The largest accepted `|x|`.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// The most clients whose encodings may be summed.
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// The largest `|q|` of one encoded coordinate: `floor((2^31 - 1) / max_clients)`.
    pub fn max_level(&self) -> i64 {
        i64::from(i32::MAX) / self.max_clients as i64
    }

    /// Levels per unit: `q = round(x * scale)`.
    pub fn scale(&self) -> f64 {
        self.max_level() as f64 / self.bound
    }

    /// One quantisation step in the units of the input (`1 / scale`).
    pub fn step(&self) -> f64 {
        1.0 / self.scale()
    }

    /// Encodes one flat vector. Refuses (naming the first offending index) any NaN, infinite, or
    /// beyond-`bound` coordinate.
    pub fn encode(&self, values: &[f32]) -> Result<Vec<u32>, SecAggError> {
        let mut out = Vec::with_capacity(values.len());
        self.encode_into(values, 0, &mut out)?;
        Ok(out)
    }

    /// Encodes a delta given as one vector per tensor (layout order), flattened.
    pub fn encode_tensors(&self, tensors: &[Vec<f32>]) -> Result<Vec<u32>, SecAggError> {
        let mut out = Vec::with_capacity(tensors.iter().map(Vec::len).sum());
        for t in tensors {
            self.encode_into(t, out.len(), &mut out)?;
        }
        Ok(out)
    }

    fn encode_into(
        &self,
        values: &[f32],
        offset: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), SecAggError> {
        let scale = self.scale();
        let max = self.max_level();
        for (i, &v) in values.iter().enumerate() {
            let x = f64::from(v);
            if !x.is_finite() {
                return Err(SecAggError::NonFinite { index: offset + i });
            }
            if x.abs() > self.bound {
                return Err(SecAggError::OutOfBound {
                    index: offset + i,
                    value: x,
                    bound: self.bound,
                });
            }
            // The clamp only absorbs float rounding of `x * scale` at the very edge.
            let q = ((x * scale).round() as i64).clamp(-max, max);
            out.push(q as i32 as u32);
        }
        Ok(())
    }

    /// Decodes the ring sum of `num_clients` encodings. Refuses `num_clients > max_clients`
    /// (such a sum may have wrapped); below that bound the result is exact by construction.
    pub fn decode_sum(&self, sum: &[u32], num_clients: usize) -> Result<Vec<f64>, SecAggError> {
        if num_clients > self.max_clients {
            return Err(SecAggError::TooManyClients {
                got: num_clients,
                max: self.max_clients,
            });
        }
        let step = self.step();
        Ok(sum.iter().map(|&s| f64::from(s as i32) * step).collect())
    }

    /// [`decode_sum`](Self::decode_sum), divided by `num_clients` and split into tensors of the
    /// given lengths (layout order): the unweighted mean of the survivors' deltas.
    pub fn decode_mean_tensors(
        &self,
        sum: &[u32],
        num_clients: usize,
        lengths: &[usize],
    ) -> Result<Vec<Vec<f32>>, SecAggError> {
        let total: usize = lengths.iter().sum();
        if total != sum.len() {
            return Err(SecAggError::Length {
                expected: total,
                got: sum.len(),
            });
        }
        if num_clients == 0 {
            return Err(SecAggError::Config("a mean of 0 clients".into()));
        }
        let flat = self.decode_sum(sum, num_clients)?;
        let n = num_clients as f64;
        let mut rest = flat.as_slice();
        Ok(lengths
            .iter()
            .map(|&len| {
                let (head, tail) = rest.split_at(len);
                rest = tail;
                head.iter().map(|&x| (x / n) as f32).collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_half_a_step() {
        let f = FixedPoint::for_bound(2.0, 10).unwrap();
        let xs = [0.0f32, 1.0, -1.0, 2.0, -2.0, 0.123_456, -1.999_99];
        let enc = f.encode(&xs).unwrap();
        let dec = f.decode_sum(&enc, 1).unwrap();
        for (x, d) in xs.iter().zip(&dec) {
            assert!(
                (f64::from(*x) - d).abs() <= f.step() / 2.0 + 1e-12,
                "{x} -> {d}"
            );
        }
    }

    #[test]
    fn max_level_fills_the_signed_range() {
        let f = FixedPoint::for_bound(1.0, 7).unwrap();
        assert_eq!(f.max_level(), i64::from(i32::MAX) / 7);
        assert!(f.max_level() * 7 <= i64::from(i32::MAX));
        assert!((f.max_level() + 1) * 7 > i64::from(i32::MAX));
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(FixedPoint::for_bound(0.0, 3).is_err());
        assert!(FixedPoint::for_bound(f64::NAN, 3).is_err());
        assert!(FixedPoint::for_bound(f64::INFINITY, 3).is_err());
        assert!(FixedPoint::for_bound(1.0, 0).is_err());
        assert!(FixedPoint::for_bound(1.0, 1 << 31).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let f: Result<FixedPoint, _> = serde_json::from_str(r#"{"bound":-1.0,"max_clients":3}"#);
        assert!(f.is_err());
        let f = FixedPoint::for_bound(0.5, 3).unwrap();
        let back: FixedPoint = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn clip_norm_encoding_accepts_what_clip_returns() {
        let mut delta = vec![vec![3.0f32, 4.0], vec![0.0]];
        crate::dp::clip(&mut delta, 1.0);
        let f = FixedPoint::for_clip_norm(1.0, 5).unwrap();
        assert!(f.encode_tensors(&delta).is_ok());
        // A one-hot delta at exactly the clip norm.
        assert!(f.encode(&[1.0]).is_ok());
    }

    #[test]
    fn decode_mean_splits_tensors() {
        let f = FixedPoint::for_bound(1.0, 4).unwrap();
        let a = f.encode(&[0.5, -0.25, 1.0]).unwrap();
        let b = f.encode(&[0.5, 0.25, -1.0]).unwrap();
        let sum: Vec<u32> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
        let mean = f.decode_mean_tensors(&sum, 2, &[1, 2]).unwrap();
        assert_eq!(mean.len(), 2);
        assert!((mean[0][0] - 0.5).abs() < 1e-6);
        assert!(mean[1][0].abs() < 1e-6 && mean[1][1].abs() < 1e-6);
        assert!(f.decode_mean_tensors(&sum, 2, &[1, 1]).is_err());
    }
}
