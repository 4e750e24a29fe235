//! Parity with Hugging Face `transformers` (and gguf-py for dequantisation),
//! through the Python helper tests/parity.py. Needs the project's venv with
//! `transformers gguf safetensors accelerate` installed.

mod common;

use std::path::Path;
use std::process::Command;

use emorl_lm::gguf::GgufFile;
use emorl_lm::quant::{dequantize, GgmlType};
use emorl_lm::{Architecture, DType, Model};
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

#[test]
fn gpt2_gguf_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let refs = run_helper(
        &[
            "gpt2_gguf",
            dir.path().to_str().unwrap(),
            &json(PROMPTS),
            &json(TRICKY),
        ],
        dir.path(),
    );
    let mut model = Model::load(dir.path().join("model.gguf"), DType::F32).unwrap();
    assert!(matches!(model.architecture(), Architecture::Gpt2(_)));
    // Tied head: no separate output tensor.
    assert!(!model
        .parameters()
        .iter()
        .any(|(n, _)| n == "lm_head.weight"));
    assert_eq!(model.tokenizer().eos_id(), Some(0));
    check_model(&mut model, &refs);
}

/// The tiny random Llama of parity.py in `variant`, checked from its Hugging
/// Face directory and from its llama.cpp-layout GGUF.
fn check_llama_hf(variant: &str) {
    let dir = tempfile::tempdir().unwrap();
    let refs = run_helper(
        &[
            "llama_hf",
            dir.path().to_str().unwrap(),
            &json(PROMPTS),
            &json(TRICKY),
            variant,
        ],
        dir.path(),
    );
    let tied = variant == "tied";
    for path in [dir.path().join("model"), dir.path().join("model.gguf")] {
        eprintln!("{}", path.display());
        let mut model = Model::load(&path, DType::F32).unwrap();
        let Architecture::Llama(l) = model.architecture() else {
            panic!("{} did not load as Llama", path.display());
        };
        let c = l.config();
        assert_eq!(
            (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
            (8, 2, 8)
        );
        assert_eq!(c.rope_theta, 500.0);
        assert!((c.rms_norm_eps - 1e-5).abs() < 1e-12);
        assert_eq!(c.tie_word_embeddings, tied);
        let has_head = model.parameters().iter().any(|(n, _)| n == "output.weight");
        assert_eq!(has_head, !tied);
        check_model(&mut model, &refs);
    }
}

#[test]
fn llama_hf_tied_matches_transformers() {
    check_llama_hf("tied");
}

#[test]
fn llama_hf_untied_matches_transformers() {
    check_llama_hf("untied");
}

#[test]
fn llama_hf_sharded_matches_transformers() {
    check_llama_hf("sharded");
}

/// Chat templates as the model families publish them (Jinja, as in their
/// tokenizer_config.json), rendered by Jinja with transformers' settings and
/// by us.
#[test]
fn chat_templates_match_jinja() {
    use emorl_lm::{ChatMessage, ChatTemplate};
    let llama2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    let zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    let gemma = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
    let chatml = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let convs: Vec<Vec<ChatMessage>> = vec![
        vec![ChatMessage::user("Hi there ")],
        vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("What is 2+2?"),
        ],
        vec![
            ChatMessage::system("  Sys  "),
            ChatMessage::user("Q1"),
            ChatMessage::assistant(" A1 "),
            ChatMessage::user("Q2\n"),
        ],
    ];
    let families = [
        ("llama2", llama2, "<s>", "</s>"),
        ("llama3", llama3, "<|begin_of_text|>", "<|end_of_text|>"),
        ("zephyr", zephyr, "<s>", "</s>"),
        ("gemma", gemma, "<bos>", "<eos>"),
        ("chatml", chatml, "<|im_start|>", "<|im_end|>"),
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (name, jinja, bos, eos) in families {
        let t = ChatTemplate::detect_with_tokens(jinja, Some(bos), Some(eos))
            .unwrap_or_else(|| panic!("{name} template not detected"));
        for conv in &convs {
            for gen in [true, false] {
                let msgs: Vec<_> = conv
                    .iter()
                    .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
                    .collect();
                cases.push(serde_json::json!({
                    "template": jinja, "messages": msgs, "bos": bos, "eos": eos,
                    "add_generation_prompt": gen,
                }));
                ours.push((name, t.render(conv, gen)));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity.py");
    let out = Command::new(common::python())
        .arg(&script)
        .args(["chat", dir.path().to_str().unwrap()])
        .arg(&cases_path)
        .output()
        .expect("run the parity helper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jinja_out: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.path().join("chat.json")).unwrap()).unwrap();
    assert_eq!(jinja_out.len(), ours.len());
    for ((name, got), want) in ours.iter().zip(&jinja_out) {
        assert_eq!(got, want, "{name}");
    }
}
