//! Packed (int8/int4) decode weights: which files get which packing, that
//! only generation's decode steps read them, and that they stay close to
//! the dense model on SmolLM2 (the accuracy figures themselves come from
//! `cargo run --release -p emorl-lm --example bench -- --packed-ppl=FILE`).

mod common;

use emorl_lm::{DType, GenerateOptions, Model, PackPlan, Packing, Sampling};
use tch::{Kind, Tensor};

/// A fixed English text, tokenised by `model` (BOS first).
fn text_ids(model: &Model) -> Vec<i64> {
    let text = "The keeper of the old lighthouse climbed the stairs every evening. \
        He lit the lamp, wrote the weather in his book, and watched the ships pass. \
        One night a storm came from the north, and the light was all the sailors had. \
        In the morning the sea was calm again, and he slept until noon.";
    model
        .tokenizer()
        .encode(text, true)
        .expect("encode")
        .into_iter()
        .map(i64::from)
        .collect()
}

/// Mean negative log-likelihood of `ids` scored one token at a time with
/// the KV cache, the packed weights allowed.
fn decode_nll(model: &mut Model, ids: &[i64]) -> f64 {
    let _g = tch::no_grad_guard();
    model.set_use_packed(true);
    model.clear_cache();
    let mut nll = 0.0;
    for w in ids.windows(2) {
        let out = model
            .forward_cached(&Tensor::from_slice(&w[..1]).view([1, 1]), None, None)
            .expect("decode step");
        nll -= out
            .logits
            .view([-1])
            .log_softmax(-1, Kind::Float)
            .double_value(&[w[1]]);
    }
    model.clear_cache();
    model.set_use_packed(false);
    nll / (ids.len() - 1) as f64
}

#[test]
fn smollm2_keeps_its_quantization_and_stays_close_to_dense() {
    let mut model = Model::load(common::smollm2(), DType::F32).expect("load SmolLM2");
    // The Q4_1 file stores its blocks in 4 bits and the tied output layer
    // (token embeddings) as Q8_0.
    let plan = model.auto_pack_plan();
    assert_eq!(
        plan,
        PackPlan {
            blocks: Some(Packing::Int4),
            output: Some(Packing::Int8)
        }
    );
    assert_eq!(plan.name(), "int4+int8");
    let ids = text_ids(&model);
    let tokens = Tensor::from_slice(&ids).view([1, -1]);
    let dense_logits = model.forward(&tokens, None, None).unwrap().logits;
    let dense_nll = decode_nll(&mut model, &ids);
    let dense_first = {
        let out = model.forward_cached(&Tensor::from_slice(&ids[..1]).view([1, 1]), None, None);
        model.clear_cache();
        out.unwrap().logits
    };
    let dense_generation = model
        .generate(&["Tell me about the sea."], &greedy(), None)
        .unwrap();

    model.pack_weights(plan).expect("pack");
    assert_eq!(model.pack_plan(), plan);
    // A many-row pass (the prefill, scoring, training) keeps the dense weights.
    let after = model.forward(&tokens, None, None).unwrap().logits;
    assert!(after.equal(&dense_logits), "a long forward pass changed");
    // Decode steps read the packed weights: close, not identical.
    let packed_nll = decode_nll(&mut model, &ids);
    let ratio = (packed_nll - dense_nll).exp();
    assert!(
        packed_nll != dense_nll,
        "decode steps did not use the packed weights"
    );
    assert!(
        (0.97..1.03).contains(&ratio),
        "perplexity ratio packed/dense {ratio:.4} (nll {packed_nll:.4} vs {dense_nll:.4})"
    );
    // Without set_use_packed a decode step is dense again.
    model.clear_cache();
    let first = model
        .forward_cached(&Tensor::from_slice(&ids[..1]).view([1, 1]), None, None)
        .unwrap()
        .logits;
    assert!(first.equal(&dense_first));
    model.clear_cache();

    // Generation decodes with them and says where its time went.
    let packed = model
        .generate(&["Tell me about the sea."], &greedy(), None)
        .unwrap();
    let t = model.last_generation_timing().expect("timing");
    assert_eq!(t.decode_tokens, 11);
    assert_eq!(t.prefill_tokens, packed[0].prompt_tokens.len());
    assert!(t.prefill_seconds > 0.0 && t.decode_seconds > 0.0);
    assert!(packed[0]
        .logprobs
        .iter()
        .zip(&dense_generation[0].logprobs)
        .skip(1)
        .zip(packed[0].tokens.iter().zip(&dense_generation[0].tokens))
        .any(|((a, b), (x, y))| x == y && a != b));

    // Dropping the packed copies restores dense decoding exactly.
    model.pack_weights(PackPlan::default()).unwrap();
    assert_eq!(decode_nll(&mut model, &ids), dense_nll);
}

#[test]
fn float_files_stay_dense_and_shapes_off_the_kernels_are_refused_whole() {
    let mut model = Model::load(common::stories260k(), DType::F32).expect("load stories260K");
    assert_eq!(model.auto_pack_plan(), PackPlan::default());
    let prompt = ["Once upon a time"];
    let before = model.generate(&prompt, &greedy(), None).unwrap();
    // stories260K's MLP is 172 wide: no packed kernel takes it.
    // int8 stops at the down projection (172 inputs), int4 already at the
    // stacked gate/up projection (344 outputs, not a multiple of 16).
    for (p, shape) in [(Packing::Int8, "[64, 172]"), (Packing::Int4, "[344, 64]")] {
        let e = model
            .pack_weights(PackPlan::uniform(Some(p)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(shape) && e.contains("use f32 or bf16"), "{e}");
        // Refused whole: no layer was packed, generation is unchanged.
        assert_eq!(model.pack_plan(), PackPlan::default());
        let after = model.generate(&prompt, &greedy(), None).unwrap();
        assert_eq!(after[0].tokens, before[0].tokens);
        assert_eq!(after[0].logprobs, before[0].logprobs);
    }
}

/// Greedy, 12 tokens, no stop token, chat template.
fn greedy() -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 12,
        sampling: Sampling::Greedy,
        stop_on_eos: false,
        chat: true,
        ..Default::default()
    }
}
