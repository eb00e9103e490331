//! Model files and dtypes: a shipped model travels as f16 (e.g. the aggregator's `--init`), so
//! reading a model widens f16 to f32; a client update is f32 only.

use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use websr_federated::tensors::{parse_update, read_model, TensorError};

fn file(dtype: Dtype, data: &[u8], metadata: &[(&str, &str)]) -> Vec<u8> {
    let view = TensorView::new(dtype, vec![2, 2], data).unwrap();
    let md: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize([("w", view)], Some(md)).unwrap()
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

#[test]
fn an_f16_model_is_read_widened_exactly() {
    let values = [0.5, -1.25, 3.0e-3, 1000.0];
    let model = read_model(&file(Dtype::F16, &f16_bytes(&values), &[])).unwrap();
    let want: Vec<f32> = values.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    assert_eq!(model.values, vec![want]);
    assert_eq!(model.layout.shapes, vec![vec![2, 2]]);

    let nan = f16_bytes(&[0.0, f32::NAN, 0.0, 0.0]);
    assert_eq!(
        read_model(&file(Dtype::F16, &nan, &[])).unwrap_err(),
        TensorError::NonFinite("w".into())
    );
    let bf16 = read_model(&file(Dtype::BF16, &f16_bytes(&values), &[])).unwrap_err();
    assert!(bf16.to_string().contains("BF16"), "{bf16}");
}

#[test]
fn an_update_must_be_f32() {
    let layout = read_model(&file(Dtype::F16, &f16_bytes(&[0.0; 4]), &[]))
        .unwrap()
        .layout;
    let meta = [("base_version", "0"), ("num_examples", "1")];
    let f32_body: Vec<u8> = [0.1f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(parse_update(&file(Dtype::F32, &f32_body, &meta), &layout).is_ok());
    let err = parse_update(&file(Dtype::F16, &f16_bytes(&[0.1; 4]), &meta), &layout).unwrap_err();
    assert_eq!(
        err,
        TensorError::Dtype {
            name: "w".into(),
            got: "F16".into()
        }
    );
}

#[test]
fn an_update_with_any_non_finite_value_is_refused_and_the_largest_finite_ones_pass() {
    let layout = read_model(&file(Dtype::F16, &f16_bytes(&[0.0; 4]), &[]))
        .unwrap()
        .layout;
    let meta = [("base_version", "0"), ("num_examples", "1")];
    let body = |values: [f32; 4]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        file(Dtype::F32, &bytes, &meta)
    };
    for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for at in 0..4 {
            let mut values = [0.25f32; 4];
            values[at] = bad;
            assert_eq!(
                parse_update(&body(values), &layout).unwrap_err(),
                TensorError::NonFinite("w".into()),
                "{bad} at {at}"
            );
        }
    }
    let extreme = [f32::MAX, -f32::MAX, f32::MAX, f32::MIN_POSITIVE];
    let parsed = parse_update(&body(extreme), &layout).unwrap();
    assert_eq!(parsed.tensors, vec![extreme.to_vec()]);
    let want = 3.0f64.sqrt() * f64::from(f32::MAX);
    assert!((parsed.norm - want).abs() / want < 1e-12, "{}", parsed.norm);
}
