//! The direct convolution against a plain reference (f64 sums, planar layout, explicit bounds).

use websr_kernels::{Conv3x3, FeatureMap};

/// A small deterministic generator (xorshift), values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }
}

/// `[cout][h][w]` from `[cin][h][w]` with weights `[cout][cin][3][3]`, zero padding.
#[allow(clippy::too_many_arguments)]
fn reference(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0; cout * h * w];
    for co in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let mut sum = bias[co] as f64;
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (sy, sx) =
                                (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                            if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                continue;
                            }
                            let v = input[(ci * h + sy as usize) * w + sx as usize] as f64;
                            sum += v * weight[((co * cin + ci) * 3 + ky) * 3 + kx] as f64;
                        }
                    }
                }
                out[(co * h + y) * w + x] = if relu {
                    sum.max(0.0) as f32
                } else {
                    sum as f32
                };
            }
        }
    }
    out
}

fn check(cin: usize, cout: usize, h: usize, w: usize, relu: bool, seed: u64) {
    let mut rng = Rng(seed);
    let input = rng.values(cin * h * w);
    let weight = rng.values(cout * cin * 9);
    let bias = rng.values(cout);
    let conv = Conv3x3::new(cin, cout, &weight, Some(&bias), relu);
    let out = conv.forward(&FeatureMap::from_planar(cin, h, w, &input));
    assert_eq!(out.channels(), cout.div_ceil(4) * 4);
    let got = out.to_planar(out.channels());
    let want = reference(cin, cout, h, w, &input, &weight, &bias, relu);
    let tolerance = 1e-5 * (9 * cin) as f32;
    for (i, (g, e)) in got[..cout * h * w].iter().zip(&want).enumerate() {
        assert!(
            (g - e).abs() <= tolerance,
            "cin {cin} cout {cout} {h}x{w} relu {relu}: value {i} is {g}, expected {e}"
        );
    }
    assert!(
        got[cout * h * w..].iter().all(|&v| v == 0.0),
        "padding channels must stay zero"
    );
}

#[test]
fn matches_the_reference_on_every_tile_and_block_shape() {
    // Widths 1..9 cover full 4-pixel tiles and every remainder; channel counts cover full
    // 12-channel blocks, 8- and 4-channel remainders and outputs that are not a multiple of 4.
    let mut seed = 1;
    for (cin, cout) in [
        (3, 48),
        (48, 48),
        (48, 12),
        (5, 7),
        (1, 1),
        (16, 20),
        (2, 8),
    ] {
        for (h, w) in [(1, 1), (2, 3), (3, 4), (5, 5), (4, 9), (7, 8)] {
            for relu in [false, true] {
                check(cin, cout, h, w, relu, seed);
                seed += 1;
            }
        }
    }
}

#[test]
fn relu_clamps_negative_outputs_and_no_bias_means_zero_bias() {
    let weight = vec![-1.0; 9];
    let input = FeatureMap::from_planar(1, 2, 2, &[1.0, 2.0, 3.0, 4.0]);
    let plain = Conv3x3::new(1, 1, &weight, None, false).forward(&input);
    let clamped = Conv3x3::new(1, 1, &weight, None, true).forward(&input);
    assert_eq!(plain.to_planar(1), vec![-10.0; 4]);
    assert_eq!(clamped.to_planar(1), vec![0.0; 4]);
}

#[test]
fn planar_round_trip_keeps_every_value() {
    let values: Vec<f32> = (0..3 * 5 * 7).map(|v| v as f32).collect();
    let map = FeatureMap::from_planar(3, 5, 7, &values);
    assert_eq!((map.channels(), map.height(), map.width()), (3, 5, 7));
    assert_eq!(map.to_planar(3), values);
    assert_eq!(map.to_planar(1), values[..35].to_vec());
}

#[test]
#[should_panic(expected = "the convolution takes 4 channels")]
fn a_map_with_the_wrong_channel_count_is_refused() {
    let conv = Conv3x3::new(4, 4, &[0.0; 4 * 4 * 9], None, false);
    conv.forward(&FeatureMap::zeros(2, 2, 3));
}
