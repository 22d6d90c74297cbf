//! GGUF: dequantization held bit for bit to the `gguf` Python package (llama.cpp's gguf-py) on
//! random blocks of every type kpg reads (`tests/fixtures/gguf/dequant.json`, written by
//! `tools/make_gguf_fixtures.py`).

mod common;

use kpg::gguf::dequant::dequantize;
use kpg::gguf::types::GgmlType;
use serde_json::Value;

fn ggml_type(name: &str) -> GgmlType {
    (0..64)
        .filter_map(GgmlType::from_id)
        .find(|t| t.to_string() == name)
        .unwrap_or_else(|| panic!("type {name}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn dequantization_matches_gguf_py_bit_for_bit() {
    let path = common::fixtures().join("gguf/dequant.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let types = fixture["types"].as_object().unwrap();
    assert_eq!(types.len(), 8, "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K");
    for (name, case) in types {
        let ty = ggml_type(name);
        let blocks = hex(case["blocks_hex"].as_str().unwrap());
        let want: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mut got = vec![f32::NAN; want.len()];
        dequantize(ty, &blocks, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name} element {i}: {g} vs {w}");
        }
    }
}

#[test]
fn unsupported_types_are_named() {
    let mut out = vec![0f32; 256];
    let err = dequantize(GgmlType::Q2_K, &[0u8; 84], &mut out).unwrap_err();
    assert!(err.contains("Q2_K is not supported"), "{err}");
}
