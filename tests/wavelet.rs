//! Haar DWT/IDWT: the published 2x2 formulas, exact inverse and orthonormality, on every
//! backend this build reaches.

mod common;

use common::{devices, max_abs_diff, synthetic};
use websr::burn::tensor::{Tensor, TensorData};
use websr::wavelet::{dwt, dwt_levels, idwt, idwt_levels};

fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn one_block_matches_methods_md_formulas() {
    // [[a, b], [c, d]] = [[1, 2], [3, 4]]:
    // LL = (1+2+3+4)/2 = 5, LH = (1+2-3-4)/2 = -2, HL = (1-2+3-4)/2 = -1, HH = (1-2-3+4)/2 = 0.
    for (name, device) in devices() {
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &device,
        );
        let bands = to_vec(dwt(x));
        assert_eq!(bands, vec![5.0, -2.0, -1.0, 0.0], "{name}");
    }
}

#[test]
fn channel_layout_is_band_major_like_diwa() {
    // Two channels with constant values 1 and 3: LL of channel c is 2 * value, the rest zero,
    // and the layout is [LL(c0), LL(c1), LH(c0), LH(c1), ...].
    for (name, device) in devices() {
        let mut data = vec![1.0f32; 16];
        data.extend(vec![3.0f32; 16]);
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 2, 4, 4]), &device);
        let out = dwt(x);
        assert_eq!(out.dims(), [1, 8, 2, 2]);
        let v = to_vec(out);
        assert!(v[0..4].iter().all(|&x| x == 2.0), "{name}");
        assert!(v[4..8].iter().all(|&x| x == 6.0), "{name}");
        assert!(v[8..].iter().all(|&x| x == 0.0), "{name}");
    }
}

#[test]
fn inverse_is_exact_and_energy_is_preserved() {
    for (name, device) in devices() {
        let img = synthetic(24, 40, 7);
        let x = Tensor::<4>::from_data(TensorData::new(img.data.clone(), [1, 3, 24, 40]), &device);
        let bands = dwt(x.clone());
        assert_eq!(bands.dims(), [1, 12, 12, 20]);
        let back = to_vec(idwt(bands.clone()));
        assert!(max_abs_diff(&back, &img.data) < 1e-5, "{name}: inverse");
        let e_in: f64 = img.data.iter().map(|v| (*v as f64).powi(2)).sum();
        let e_out: f64 = to_vec(bands).iter().map(|v| (*v as f64).powi(2)).sum();
        assert!(
            (e_in - e_out).abs() / e_in < 1e-5,
            "{name}: energy {e_in} vs {e_out}"
        );
    }
}

#[test]
fn transform_preserves_inner_products() {
    // Orthonormal: <Wx, Wy> = <x, y> for any x, y, not only the norm.
    for (name, device) in devices() {
        let a = synthetic(16, 16, 1);
        let b = synthetic(16, 16, 2);
        let ta = Tensor::<4>::from_data(TensorData::new(a.data.clone(), [1, 3, 16, 16]), &device);
        let tb = Tensor::<4>::from_data(TensorData::new(b.data.clone(), [1, 3, 16, 16]), &device);
        let dot = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum::<f64>()
        };
        let before = dot(&a.data, &b.data);
        let after = dot(&to_vec(dwt(ta)), &to_vec(dwt(tb)));
        assert!((before - after).abs() / before.abs() < 1e-5, "{name}");
    }
}

#[test]
fn two_level_packet_round_trips() {
    for (name, device) in devices() {
        let img = synthetic(32, 16, 3);
        let x = Tensor::<4>::from_data(TensorData::new(img.data.clone(), [1, 3, 32, 16]), &device);
        let packet = dwt_levels(x, 2);
        assert_eq!(packet.dims(), [1, 48, 8, 4]);
        let back = to_vec(idwt_levels(packet, 2));
        assert!(max_abs_diff(&back, &img.data) < 1e-5, "{name}");
    }
}

#[test]
#[should_panic(expected = "even")]
fn odd_sizes_are_refused() {
    let (_, device) = devices().remove(0);
    let x = Tensor::<4>::zeros([1, 1, 3, 4], &device);
    let _ = dwt(x);
}
