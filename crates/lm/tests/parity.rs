//! Parity with Hugging Face `transformers` (and gguf-py for dequantisation),
//! through the Python helper tests/parity.py. Needs the project's venv with
//! `transformers gguf safetensors accelerate` installed.

mod common;

use std::path::Path;
use std::process::Command;

use emorl_lm::gguf::GgufFile;
use emorl_lm::quant::{dequantize, GgmlType};
use emorl_lm::{DType, Model};
use tch::{Kind, Tensor};

const PROMPTS: &[&str] = &[
    "Once upon a time",
    "Lily and Ben went to the park. They saw a big dog",
    "The capital of France is",
];

const TRICKY: &[&str] = &[
    "hello world",
    "Héllo wörld, ça va? Ñandú",
    "日本語のテキストです",
    "emoji 👋🏽 🎉 and 🇫🇷",
    "digits 12345 67.89 and 1,000,000",
    "a   b\t\tc\n\n\nd  ",
    "  leading spaces",
    "trailing space ",
    "MiXeD CaSe and punctuation!?...",
    "it's they're we'll I'd",
    "",
];

fn run_helper(args: &[&str], dir: &Path) -> std::collections::HashMap<String, Tensor> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity.py");
    let out = Command::new(common::python())
        .arg(&script)
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run the parity helper");
    assert!(
        out.status.success(),
        "parity.py failed (needs `pip install transformers gguf safetensors accelerate` in the venv):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Tensor::read_safetensors(dir.join("ref.safetensors"))
        .expect("read reference")
        .into_iter()
        .collect()
}

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).norm().double_value(&[]);
    d / b.norm().double_value(&[])
}

fn ids_of(t: &Tensor) -> Vec<u32> {
    Vec::<i64>::try_from(t)
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

/// Compares logits prompt by prompt and as one left-padded batch, and the
/// tokenizations of the tricky strings.
fn check_model(model: &mut Model, refs: &std::collections::HashMap<String, Tensor>) {
    let mut rows = Vec::new();
    for (i, p) in PROMPTS.iter().enumerate() {
        let ids = ids_of(&refs[&format!("ids_{i}")]);
        let ours = model.tokenizer().encode(p, true).unwrap();
        assert_eq!(ours, ids, "prompt {i} tokenization");
        let expected = &refs[&format!("logits_{i}")];
        let tokens =
            Tensor::from_slice(&ids.iter().map(|&x| x as i64).collect::<Vec<_>>()).view([1, -1]);
        let out = model.forward(&tokens, None, None).unwrap();
        let got = out.logits.squeeze_dim(0);
        let e = rel_l2(&got, expected);
        eprintln!("prompt {i}: {} tokens, relative L2 {e:.2e}", ids.len());
        assert!(e < 1e-3, "prompt {i}: relative L2 {e}");
        rows.push(ids);
    }
    // The same prompts as one left-padded batch.
    let len = rows.iter().map(|r| r.len()).max().unwrap();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for r in &rows {
        let pad = len - r.len();
        flat.extend(std::iter::repeat_n(0i64, pad));
        flat.extend(r.iter().map(|&x| x as i64));
        mask.extend(std::iter::repeat_n(0i64, pad));
        mask.extend(std::iter::repeat_n(1i64, r.len()));
    }
    let b = rows.len() as i64;
    let tokens = Tensor::from_slice(&flat).view([b, len as i64]);
    let mask = Tensor::from_slice(&mask).view([b, len as i64]);
    let out = model.forward(&tokens, Some(&mask), None).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let pad = (len - r.len()) as i64;
        let got = out.logits.get(i as i64).narrow(0, pad, r.len() as i64);
        let e = rel_l2(&got, &refs[&format!("logits_{i}")]);
        eprintln!("batched prompt {i}: relative L2 {e:.2e}");
        assert!(e < 1e-3, "batched prompt {i}: relative L2 {e}");
    }
    for (j, s) in TRICKY.iter().enumerate() {
        let expected = ids_of(&refs[&format!("tok_{j}")]);
        let ours = model.tokenizer().encode(s, false).unwrap();
        assert_eq!(ours, expected, "tokenization of {s:?}");
    }
}

fn json(v: &[&str]) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn stories260k_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = common::stories260k();
    let refs = run_helper(
        &[
            "gguf",
            dir.path().to_str().unwrap(),
            model_path.to_str().unwrap(),
            &json(PROMPTS),
            &json(TRICKY),
        ],
        dir.path(),
    );
    let mut model = Model::load(&model_path, DType::F32).unwrap();
    check_model(&mut model, &refs);
}

#[test]
fn smollm2_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = common::smollm2();
    let refs = run_helper(
        &[
            "gguf",
            dir.path().to_str().unwrap(),
            model_path.to_str().unwrap(),
            &json(PROMPTS),
            &json(TRICKY),
        ],
        dir.path(),
    );
    let mut model = Model::load(&model_path, DType::F32).unwrap();
    check_model(&mut model, &refs);
}

#[test]
fn gpt2_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let refs = run_helper(
        &[
            "gpt2",
            dir.path().to_str().unwrap(),
            &json(PROMPTS),
            &json(TRICKY),
        ],
        dir.path(),
    );
    let mut model = Model::load(dir.path().join("model"), DType::F32).unwrap();
    check_model(&mut model, &refs);
}

#[test]
fn dequantisation_matches_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let refs = run_helper(&["dequant", dir.path().to_str().unwrap()], dir.path());
    for (name, ty) in [
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
        ("Q5_0", GgmlType::Q5_0),
        ("Q5_1", GgmlType::Q5_1),
        ("Q8_0", GgmlType::Q8_0),
        ("Q2_K", GgmlType::Q2K),
        ("Q3_K", GgmlType::Q3K),
        ("Q4_K", GgmlType::Q4K),
        ("Q5_K", GgmlType::Q5K),
        ("Q6_K", GgmlType::Q6K),
    ] {
        let raw: Vec<u8> = Vec::<u8>::try_from(&refs[&format!("raw_{name}")]).unwrap();
        let expected = Vec::<f32>::try_from(&refs[&format!("ref_{name}")]).unwrap();
        let got = dequantize(ty, &raw, expected.len()).unwrap();
        let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-6 * scale,
                "{name} value {i}: ours {g}, gguf-py {e}"
            );
        }
    }
}

#[test]
fn bf16_is_close_to_f32() {
    let path = common::stories260k();
    let mut f = Model::load(&path, DType::F32).unwrap();
    let mut b = Model::load(&path, DType::BF16).unwrap();
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.version(), 1);
    let ids = f
        .tokenizer()
        .encode("Once upon a time, there was", true)
        .unwrap();
    let t = Tensor::from_slice(&ids.iter().map(|&x| x as i64).collect::<Vec<_>>()).view([1, -1]);
    let lf = f.forward(&t, None, None).unwrap().logits;
    let lb = b.forward(&t, None, None).unwrap().logits;
    assert_eq!(lb.kind(), Kind::Float);
    let e = rel_l2(&lb, &lf);
    assert!(e < 0.05, "bf16 vs f32 relative L2 {e}");
}
