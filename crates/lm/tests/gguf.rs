//! GGUF parsing: valid files of every version, and clear errors (never
//! panics) for truncated, garbage and hostile files.

mod common;

use emorl_lm::gguf::{write_gguf, GgufFile, GgufHeader, GgufValue};
use emorl_lm::quant::GgmlType;
use emorl_lm::LmError;
use tch::{Device, Kind};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn sample_file() -> Vec<u8> {
    let mut q8 = half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    write_gguf(
        &[
            ("general.architecture", GgufValue::String("llama".into())),
            ("test.count", GgufValue::U32(7)),
            ("test.eps", GgufValue::F32(1e-5)),
            (
                "test.list",
                GgufValue::Array(vec![
                    GgufValue::String("a".into()),
                    GgufValue::String("bc".into()),
                ]),
            ),
            ("test.flag", GgufValue::Bool(true)),
        ],
        &[
            (
                "w.f32",
                vec![3, 2],
                GgmlType::F32,
                f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ),
            ("w.q8", vec![32], GgmlType::Q8_0, q8),
        ],
    )
}

#[test]
fn parses_metadata_and_tensors() {
    let g = GgufFile::from_bytes(sample_file(), "sample.gguf").unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.get_u64("test.count").unwrap(), 7);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_str_array("test.list").unwrap(), vec!["a", "bc"]);
    assert_eq!(g.get_bool_opt("test.flag").unwrap(), Some(true));
    assert!((g.get_f64_opt("test.eps").unwrap().unwrap() - 1e-5).abs() < 1e-9);
    let t = g.tensor("w.f32", Kind::Float, Device::Cpu).unwrap();
    // ggml dims [3, 2] are torch shape [2, 3], rows contiguous
    assert_eq!(t.size(), vec![2, 3]);
    assert_eq!(
        Vec::<f32>::try_from(t.view([-1])).unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert!(!t.requires_grad());
    let q = g.tensor("w.q8", Kind::Float, Device::Cpu).unwrap();
    let v = Vec::<f32>::try_from(q).unwrap();
    assert_eq!(v[0], -8.0);
    assert_eq!(v[31], 7.5);
    let b = g.tensor("w.f32", Kind::BFloat16, Device::Cpu).unwrap();
    assert_eq!(b.kind(), Kind::BFloat16);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample_file();
    for n in 0..bytes.len() {
        let r = GgufFile::from_bytes(bytes[..n].to_vec(), "cut.gguf");
        match r {
            Err(LmError::Gguf { path, msg }) => {
                assert_eq!(path, "cut.gguf");
                assert!(!msg.is_empty());
            }
            Err(e) => panic!("unexpected error kind at {n}: {e}"),
            Ok(_) => panic!("truncation at {n} of {} parsed", bytes.len()),
        }
    }
}

#[test]
fn garbage_is_an_error() {
    let mut x: u64 = 99;
    for len in [0usize, 3, 4, 8, 24, 100, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        let e = GgufFile::from_bytes(bytes, "junk.bin").unwrap_err();
        assert!(e.to_string().contains("junk.bin"), "{e}");
    }
    // Right magic, random rest: must fail cleanly, not panic or allocate wildly.
    for seed in 0..200u64 {
        let mut x = seed;
        let mut bytes = b"GGUF".to_vec();
        bytes.extend([3, 0, 0, 0]);
        bytes.extend((0..200).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        }));
        let _ = GgufHeader::parse(&bytes);
    }
}

/// Builds a v3 header by hand: counts, then raw bytes.
fn header(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(rest);
    b
}

fn kv_string(key: &str, val_type: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend(key.as_bytes());
    b.extend(val_type.to_le_bytes());
    b.extend(payload);
    b
}

fn msg(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes, "hostile.gguf") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("hostile file parsed"),
    }
}

#[test]
fn hostile_headers_are_rejected() {
    // Absurd counts.
    assert!(msg(header(u64::MAX, 0, &[])).contains("tensors"));
    assert!(msg(header(0, u64::MAX, &[])).contains("metadata"));
    // A string length of 2^63.
    let mut rest = (1u64 << 63).to_le_bytes().to_vec();
    rest.extend(b"abc");
    assert!(msg(header(0, 1, &rest)).contains("truncated"));
    // An array claiming 2^60 u64 items.
    let mut payload = 10u32.to_le_bytes().to_vec();
    payload.extend((1u64 << 60).to_le_bytes());
    let m = msg(header(0, 1, &kv_string("k", 9, &payload)));
    assert!(m.contains("array items"), "{m}");
    // Deeply nested arrays.
    let mut payload = Vec::new();
    for _ in 0..100 {
        payload.extend(9u32.to_le_bytes());
        payload.extend(1u64.to_le_bytes());
    }
    let m = msg(header(0, 1, &kv_string("deep", 9, &payload)));
    assert!(m.contains("nested"), "{m}");
    // Unknown value type, bad bool.
    assert!(msg(header(0, 1, &kv_string("k", 77, &[]))).contains("unknown value type"));
    assert!(msg(header(0, 1, &kv_string("k", 7, &[2]))).contains("bool"));
    // Bad magic and versions.
    assert!(msg(b"GGML\x03\0\0\0".to_vec()).contains("magic"));
    let mut v = b"GGUF".to_vec();
    v.extend(9u32.to_le_bytes());
    v.extend([0u8; 16]);
    assert!(msg(v).contains("version 9"));
    let mut v = b"GGUF".to_vec();
    v.extend(3u32.to_be_bytes());
    v.extend([0u8; 16]);
    assert!(msg(v).contains("big-endian"));
    // Bad alignment value.
    let m = msg(header(
        0,
        1,
        &kv_string("general.alignment", 4, &3u32.to_le_bytes()),
    ));
    assert!(m.contains("alignment"), "{m}");
}

fn tensor_entry(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = (name.len() as u64).to_le_bytes().to_vec();
    b.extend(name.as_bytes());
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(ty.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b
}

#[test]
fn hostile_tensor_directories_are_rejected() {
    let pad = vec![0u8; 256];
    let with = |entries: Vec<u8>, n: u64| {
        let mut r = entries;
        r.extend(&pad);
        header(n, 0, &r)
    };
    // Element count overflow.
    let m = msg(with(tensor_entry("big", &[1 << 40, 1 << 40], 0, 0), 1));
    assert!(m.contains("big") && m.contains("overflow"), "{m}");
    // Too many dims.
    let m = msg(with(tensor_entry("t", &[1, 1, 1, 1, 1], 0, 0), 1));
    assert!(m.contains("dimensions"), "{m}");
    // Data past the end of the file.
    let m = msg(with(tensor_entry("far", &[8], 0, 1 << 20), 1));
    assert!(m.contains("far") && m.contains("past the end"), "{m}");
    // Misaligned offset.
    let m = msg(with(tensor_entry("odd", &[1], 0, 4), 1));
    assert!(m.contains("odd") && m.contains("aligned"), "{m}");
    // Row not a whole number of blocks.
    let m = msg(with(tensor_entry("q", &[31], 8, 0), 1));
    assert!(m.contains("q") && m.contains("block"), "{m}");
    // Duplicate names.
    let mut e = tensor_entry("dup", &[1], 0, 0);
    e.extend(tensor_entry("dup", &[1], 0, 32));
    let m = msg(with(e, 2));
    assert!(m.contains("duplicate"), "{m}");
}

#[test]
fn unknown_type_and_missing_tensor_errors_name_file_and_tensor() {
    let mut e = tensor_entry("iq", &[256], 16, 0);
    e.extend(vec![0u8; 512]);
    let g = GgufFile::from_bytes(header(1, 0, &e), "m.gguf").unwrap();
    let err = g
        .tensor("iq", Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.gguf") && err.contains("`iq`") && err.contains("IQ2_XXS"),
        "{err}"
    );
    let err = g
        .tensor("nope.weight", Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.gguf") && err.contains("nope.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn version_1_and_2_layouts() {
    // v1: u32 counts and lengths; v2: u64. Same content must parse alike.
    for version in [1u32, 2] {
        let len = |n: u64| -> Vec<u8> {
            if version == 1 {
                (n as u32).to_le_bytes().to_vec()
            } else {
                n.to_le_bytes().to_vec()
            }
        };
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(len(1));
        b.extend(len(1));
        b.extend(len(3));
        b.extend(b"key");
        b.extend(8u32.to_le_bytes());
        b.extend(len(5));
        b.extend(b"value");
        b.extend(len(1));
        b.extend(b"t");
        b.extend(1u32.to_le_bytes());
        b.extend(len(2));
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend(f32_bytes(&[0.5, -1.0]));
        let g = GgufFile::from_bytes(b, "v.gguf").unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.get_str("key").unwrap(), "value");
        let t = g.tensor("t", Kind::Float, Device::Cpu).unwrap();
        assert_eq!(Vec::<f32>::try_from(t).unwrap(), vec![0.5, -1.0]);
    }
}

#[test]
fn stories260k_file_parses() {
    let g = GgufFile::open(common::stories260k()).unwrap();
    assert_eq!(g.version(), 1);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 5);
    assert_eq!(g.tensor_infos().len(), 48);
}
