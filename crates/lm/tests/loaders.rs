//! Loader error paths: broken Hugging Face directories and GGUF files give
//! an `LmError` that names the file and the key or tensor, never a panic.

use std::path::Path;

use emorl_lm::gguf::{write_gguf, GgufValue};
use emorl_lm::quant::GgmlType;
use emorl_lm::{DType, LmError, Model};
use tch::{Kind, Tensor};

const VOCAB: i64 = 16;
const HIDDEN: i64 = 8;
const FFN: i64 = 12;
const HEADS: i64 = 2;
const KV: i64 = 1;
const HEAD_DIM: i64 = 4;

fn llama_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": 2,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
    })
}

/// Every tensor of a tiny untied Hugging Face Llama.
fn llama_tensors() -> Vec<(String, Tensor)> {
    let r = |s: &[i64]| Tensor::randn(s, (Kind::Float, tch::Device::Cpu));
    let mut t = vec![
        ("model.embed_tokens.weight".to_string(), r(&[VOCAB, HIDDEN])),
        ("model.norm.weight".to_string(), r(&[HIDDEN])),
        ("lm_head.weight".to_string(), r(&[VOCAB, HIDDEN])),
    ];
    for i in 0..2 {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        t.push((p("input_layernorm"), r(&[HIDDEN])));
        t.push((p("self_attn.q_proj"), r(&[HEADS * HEAD_DIM, HIDDEN])));
        t.push((p("self_attn.k_proj"), r(&[KV * HEAD_DIM, HIDDEN])));
        t.push((p("self_attn.v_proj"), r(&[KV * HEAD_DIM, HIDDEN])));
        t.push((p("self_attn.o_proj"), r(&[HIDDEN, HEADS * HEAD_DIM])));
        t.push((p("post_attention_layernorm"), r(&[HIDDEN])));
        t.push((p("mlp.gate_proj"), r(&[FFN, HIDDEN])));
        t.push((p("mlp.up_proj"), r(&[FFN, HIDDEN])));
        t.push((p("mlp.down_proj"), r(&[HIDDEN, FFN])));
    }
    t
}

fn write_dir(dir: &Path, config: &serde_json::Value, tensors: &[(String, Tensor)]) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, dir.join("model.safetensors")).unwrap();
}

fn load_err(path: &Path) -> LmError {
    match Model::load(path, DType::F32) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn llama_dir_loads_weights_before_the_tokenizer() {
    // A complete directory without tokenizer.json gets past the weights and
    // fails on the tokenizer: the loader accepted every tensor.
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), &llama_config(), &llama_tensors());
    let e = load_err(dir.path());
    assert!(matches!(e, LmError::Io { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

#[test]
fn missing_config_key_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = llama_config();
    cfg.as_object_mut().unwrap().remove("hidden_size");
    write_dir(dir.path(), &cfg, &llama_tensors());
    let e = load_err(dir.path());
    let s = e.to_string();
    assert!(matches!(e, LmError::Json { .. }), "{s}");
    assert!(
        s.contains("config.json") && s.contains("hidden_size"),
        "{s}"
    );
}

#[test]
fn bad_json_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), &llama_config(), &llama_tensors());
    std::fs::write(
        dir.path().join("config.json"),
        b"{\"model_type\": \"llama\", ",
    )
    .unwrap();
    let s = load_err(dir.path()).to_string();
    assert!(s.contains("config.json"), "{s}");

    let mut cfg = llama_config();
    cfg["num_key_value_heads"] = serde_json::json!(3);
    write_dir(dir.path(), &cfg, &llama_tensors());
    let s = load_err(dir.path()).to_string();
    assert!(s.contains("num_key_value_heads"), "{s}");

    let mut cfg = llama_config();
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    write_dir(dir.path(), &cfg, &llama_tensors());
    let e = load_err(dir.path());
    assert!(matches!(e, LmError::Unsupported(_)), "{e}");

    let mut cfg = llama_config();
    cfg["model_type"] = serde_json::json!("falcon");
    write_dir(dir.path(), &cfg, &llama_tensors());
    let e = load_err(dir.path());
    assert!(e.to_string().contains("falcon"), "{e}");
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = llama_tensors();
    t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight");
    write_dir(dir.path(), &llama_config(), &t);
    let e = load_err(dir.path());
    assert!(
        matches!(&e, LmError::MissingTensor { tensor, .. } if tensor == "model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );

    // Untied config without lm_head.
    let mut t = llama_tensors();
    t.retain(|(n, _)| n != "lm_head.weight");
    write_dir(dir.path(), &llama_config(), &t);
    let e = load_err(dir.path());
    assert!(
        matches!(&e, LmError::MissingTensor { tensor, .. } if tensor == "lm_head.weight"),
        "{e}"
    );

    let mut t = llama_tensors();
    for (n, w) in t.iter_mut() {
        if n == "model.layers.0.self_attn.k_proj.weight" {
            *w = Tensor::zeros([HEADS * HEAD_DIM, HIDDEN], (Kind::Float, tch::Device::Cpu));
        }
    }
    write_dir(dir.path(), &llama_config(), &t);
    let e = load_err(dir.path());
    let s = e.to_string();
    assert!(
        matches!(&e, LmError::Tensor { tensor, .. } if tensor == "model.layers.0.self_attn.k_proj.weight"),
        "{s}"
    );
    assert!(
        s.contains("model.safetensors") && s.contains("[4, 8]"),
        "{s}"
    );
}

#[test]
fn broken_shard_index_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), llama_config().to_string()).unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, b"{\"weight_map\": [1, 2]}").unwrap();
    let s = load_err(dir.path()).to_string();
    assert!(
        s.contains("model.safetensors.index.json") && s.contains("weight_map"),
        "{s}"
    );
    std::fs::write(
        &index,
        b"{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}",
    )
    .unwrap();
    let s = load_err(dir.path()).to_string();
    assert!(s.contains("model-00001-of-00002.safetensors"), "{s}");
    std::fs::write(&index, b"not json").unwrap();
    let s = load_err(dir.path()).to_string();
    assert!(s.contains("model.safetensors.index.json"), "{s}");
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect()
}

/// A tiny gpt2-architecture GGUF with a gpt2 BPE vocabulary, minus the
/// tensors in `skip`.
fn gpt2_gguf(skip: &[&str]) -> Vec<u8> {
    let d = 8u64;
    let vocab: Vec<GgufValue> = ["a", "b", "c", "ab", "<|endoftext|>"]
        .iter()
        .map(|s| GgufValue::String(s.to_string()))
        .collect();
    let nv = vocab.len() as u64;
    let meta = vec![
        ("general.architecture", GgufValue::String("gpt2".into())),
        ("gpt2.block_count", GgufValue::U32(1)),
        ("gpt2.context_length", GgufValue::U32(16)),
        ("gpt2.embedding_length", GgufValue::U32(d as u32)),
        ("gpt2.feed_forward_length", GgufValue::U32(4 * d as u32)),
        ("gpt2.attention.head_count", GgufValue::U32(2)),
        ("gpt2.attention.layer_norm_epsilon", GgufValue::F32(1e-5)),
        ("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
        ("tokenizer.ggml.tokens", GgufValue::Array(vocab)),
        (
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("a b".into())]),
        ),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(4)),
    ];
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![d, nv]),
        ("position_embd.weight".into(), vec![d, 16]),
        ("output_norm.weight".into(), vec![d]),
        ("output_norm.bias".into(), vec![d]),
    ];
    let blk = |s: &str| format!("blk.0.{s}");
    for (n, dims) in [
        ("attn_norm.weight", vec![d]),
        ("attn_norm.bias", vec![d]),
        ("attn_qkv.weight", vec![d, 3 * d]),
        ("attn_qkv.bias", vec![3 * d]),
        ("attn_output.weight", vec![d, d]),
        ("attn_output.bias", vec![d]),
        ("ffn_norm.weight", vec![d]),
        ("ffn_norm.bias", vec![d]),
        ("ffn_up.weight", vec![d, 4 * d]),
        ("ffn_up.bias", vec![4 * d]),
        ("ffn_down.weight", vec![4 * d, d]),
        ("ffn_down.bias", vec![d]),
    ] {
        tensors.push((blk(n), dims));
    }
    let data: Vec<(String, Vec<u64>, Vec<u8>)> = tensors
        .into_iter()
        .filter(|(n, _)| !skip.contains(&n.as_str()))
        .map(|(n, dims)| {
            let numel = dims.iter().product::<u64>() as usize;
            (n, dims, f32_bytes(numel))
        })
        .collect();
    let refs: Vec<(&str, Vec<u64>, GgmlType, Vec<u8>)> = data
        .iter()
        .map(|(n, d, b)| (n.as_str(), d.clone(), GgmlType::F32, b.clone()))
        .collect();
    write_gguf(&meta, &refs)
}

#[test]
fn gpt2_gguf_loads_and_names_missing_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.gguf");
    std::fs::write(&ok, gpt2_gguf(&[])).unwrap();
    let mut m = Model::load(&ok, DType::F32).unwrap();
    assert_eq!(m.vocab_size(), 5);
    assert_eq!(m.max_positions(), 16);
    assert_eq!(m.tokenizer().encode("ab", false).unwrap(), vec![3]);
    let out = m
        .forward(&Tensor::from_slice(&[0i64, 3, 2]).view([1, 3]), None, None)
        .unwrap();
    assert_eq!(out.logits.size(), vec![1, 3, 5]);

    let p = dir.path().join("missing.gguf");
    std::fs::write(&p, gpt2_gguf(&["blk.0.ffn_down.bias"])).unwrap();
    let e = load_err(&p);
    assert!(
        matches!(&e, LmError::MissingTensor { tensor, path } if tensor == "blk.0.ffn_down.bias" && path.contains("missing.gguf")),
        "{e}"
    );
}
