//! Llama loading and generation on stories260K (and SmolLM2 for test B):
//! the acceptance tests, KV-cache and batching consistency, sampling,
//! stopping, log-probs and streaming.

mod common;

use emorl_lm::{DType, FinishReason, GenerateOptions, Model, Sampling};
use tch::{Kind, Tensor};

fn stories() -> Model {
    Model::load(common::stories260k(), DType::F32).expect("load stories260K")
}

fn ids_tensor(ids: &[u32]) -> Tensor {
    Tensor::from_slice(&ids.iter().map(|&x| x as i64).collect::<Vec<_>>()).view([1, -1])
}

#[test]
fn acceptance_a_stories260k_prompt_continuation() {
    let mut m = stories();
    // run.c encodes the prompt with BOS and sentencepiece's dummy prefix space.
    let ids = m.tokenizer().encode("Once upon a time", true).unwrap();
    assert_eq!(ids[0], 1, "BOS first");
    assert_eq!(
        m.tokenizer().id_to_token(ids[1]).as_deref(),
        Some("\u{2581}Once"),
        "leading space marker"
    );
    let opts = GenerateOptions {
        max_new_tokens: 80,
        ..Default::default()
    };
    let g = m.generate(&["Once upon a time"], &opts, None).unwrap();
    let full = format!("Once upon a time{}", g[0].text);
    assert!(full.starts_with(common::DOC_CONTINUATION), "got: {full:?}");
}

#[test]
fn acceptance_a_stories260k_bos_only_matches_doc() {
    let mut m = stories();
    let bos = m.tokenizer().bos_id().unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 200,
        ..Default::default()
    };
    let g = m
        .generate_from_tokens(&[vec![bos]], &opts, None, None)
        .unwrap();
    assert!(
        g[0].text.starts_with(common::DOC_SAMPLE),
        "got: {:?}",
        g[0].text
    );
}

#[test]
fn acceptance_b_smollm2_knows_paris() {
    let mut m = Model::load(common::smollm2(), DType::F32).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 40,
        chat: true,
        ..Default::default()
    };
    let g = m
        .generate(&["What is the capital of France?"], &opts, None)
        .unwrap();
    let prompt = m.tokenizer().decode(&g[0].prompt_tokens, false).unwrap();
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt:?}");
    assert!(
        prompt.ends_with(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{prompt:?}"
    );
    assert!(g[0].text.contains("Paris"), "answer: {:?}", g[0].text);
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp_reference_ids() {
    // Token ids of SmolLM2's tokenizer as published with llama.cpp's
    // "smollm" pre-tokenizer tests (digits split one by one).
    let m = Model::load(common::smollm2(), DType::F32).unwrap();
    let t = m.tokenizer();
    for (text, ids) in [
        ("Hello, we can use", vec![19556u32, 28, 392, 416, 722]),
        ("The capital of France is", vec![504, 3575, 282, 4649, 314]),
        ("\n", vec![198]),
        ("Hello world! 123", vec![19556, 905, 17, 216, 33, 34, 35]),
        ("  multiple   spaces", vec![216, 2701, 256, 5600]),
    ] {
        assert_eq!(t.encode(text, true).unwrap(), ids, "{text:?}");
        assert_eq!(t.decode(&ids, false).unwrap(), text);
    }
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
    assert!(t.stop_ids().contains(&2));
    assert!(!t.adds_bos());
}

#[test]
fn kv_cache_steps_match_full_forward() {
    let mut m = stories();
    let ids = m
        .tokenizer()
        .encode("Once upon a time, there was a little dog", true)
        .unwrap();
    let full = m.forward(&ids_tensor(&ids), None, None).unwrap().logits;
    m.clear_cache();
    let mut steps = Vec::new();
    // prefill 3 tokens, then one at a time
    let out = m
        .forward_cached(&ids_tensor(&ids[..3]), None, None)
        .unwrap();
    steps.push(out.logits);
    for i in 3..ids.len() {
        let out = m
            .forward_cached(&ids_tensor(&ids[i..i + 1]), None, None)
            .unwrap();
        steps.push(out.logits);
    }
    assert_eq!(m.cache_len(), ids.len());
    let cached = Tensor::cat(&steps, 1);
    let diff = (&cached - &full).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "max diff {diff}");
    m.clear_cache();
    assert_eq!(m.cache_len(), 0);
}

#[test]
fn batched_generation_matches_single_prompts() {
    let mut m = stories();
    let prompts = ["Once upon a time", "Tom had a red", "The sun"];
    let opts = GenerateOptions {
        max_new_tokens: 24,
        ..Default::default()
    };
    let batch = m.generate(&prompts, &opts, None).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let single = m.generate(&[p], &opts, None).unwrap();
        assert_eq!(batch[i].tokens, single[0].tokens, "prompt {p:?}");
        assert_eq!(batch[i].text, single[0].text);
        for (a, b) in batch[i].logprobs.iter().zip(&single[0].logprobs) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}

#[test]
fn logprobs_are_the_model_distribution() {
    let mut m = stories();
    let opts = GenerateOptions {
        max_new_tokens: 10,
        ..Default::default()
    };
    let g = &m.generate(&["Lily and Ben"], &opts, None).unwrap()[0];
    assert_eq!(g.logprobs.len(), g.tokens.len());
    let mut all = g.prompt_tokens.clone();
    all.extend(&g.tokens);
    let logits = m.forward(&ids_tensor(&all), None, None).unwrap().logits;
    let logp = logits.log_softmax(-1, Kind::Float);
    let p = g.prompt_tokens.len() as i64;
    for (k, (&tok, &lp)) in g.tokens.iter().zip(&g.logprobs).enumerate() {
        let expected = logp.double_value(&[0, p - 1 + k as i64, tok as i64]);
        assert!(
            (expected - lp as f64).abs() < 1e-4,
            "step {k}: {lp} vs {expected}"
        );
        // greedy: the chosen token is the most likely one
        let best = logp
            .get(0)
            .get(p - 1 + k as i64)
            .argmax(0, false)
            .int64_value(&[]);
        assert_eq!(best, tok as i64);
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let mut m = stories();
    let opts = |seed| GenerateOptions {
        max_new_tokens: 30,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 40,
            top_p: 0.9,
        },
        seed,
        ..Default::default()
    };
    let a = m.generate(&["Once upon a time"], &opts(7), None).unwrap();
    let b = m.generate(&["Once upon a time"], &opts(7), None).unwrap();
    assert_eq!(a, b);
    let outs: Vec<_> = (0..4)
        .map(|s| {
            m.generate(&["Once upon a time"], &opts(100 + s), None)
                .unwrap()[0]
                .tokens
                .clone()
        })
        .collect();
    assert!(
        outs.iter().any(|o| o != &a[0].tokens),
        "different seeds gave identical samples"
    );
    // A prompt's sample does not depend on its batch neighbours.
    let batch = m
        .generate(&["Once upon a time", "Tom"], &opts(7), None)
        .unwrap();
    assert_eq!(batch[0].tokens, a[0].tokens);
}

/// Per-row seeds: a row samples as it would alone with its seed, wherever
/// it sits in the batch (what a server batching requests relies on).
#[test]
fn per_row_seeds_sample_as_alone() {
    let mut m = stories();
    let opts = |seed| GenerateOptions {
        max_new_tokens: 24,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed,
        ..Default::default()
    };
    let enc = |m: &Model, p: &str| m.tokenizer().encode(p, true).unwrap();
    let prompts = vec![
        enc(&m, "Once upon a time"),
        enc(&m, "Tom"),
        enc(&m, "Once upon a time"),
    ];
    let seeds = [11u64, 12, 13];
    let batch = m.generate_seeded(&prompts, &seeds, &opts(0), None).unwrap();
    for (i, (p, &s)) in prompts.iter().zip(&seeds).enumerate() {
        let alone = m
            .generate_from_tokens(std::slice::from_ref(p), &opts(s), None, None)
            .unwrap();
        assert_eq!(batch[i].tokens, alone[0].tokens, "row {i}");
    }
    // Same prompt, different seeds: different samples.
    assert_ne!(batch[0].tokens, batch[2].tokens);
    // Reordered batch: each row keeps its sample.
    let rev = m
        .generate_seeded(
            &[prompts[2].clone(), prompts[1].clone(), prompts[0].clone()],
            &[13, 12, 11],
            &opts(0),
            None,
        )
        .unwrap();
    assert_eq!(rev[0].tokens, batch[2].tokens);
    assert_eq!(rev[2].tokens, batch[0].tokens);
    assert!(m
        .generate_seeded(&prompts, &seeds[..2], &opts(0), None)
        .is_err());
}

#[test]
fn stops_on_stop_tokens_and_respects_length() {
    let mut m = stories();
    let period = m.tokenizer().encode(".", false).unwrap();
    let period = *period.last().unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 100,
        stop_tokens: vec![period],
        ..Default::default()
    };
    let g = &m.generate(&["Once upon a time"], &opts, None).unwrap()[0];
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(*g.tokens.last().unwrap(), period);
    assert_eq!(g.text, ", there was a little girl named Lily.");
    let opts = GenerateOptions {
        max_new_tokens: 5,
        ..Default::default()
    };
    let g = &m.generate(&["Once upon a time"], &opts, None).unwrap()[0];
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.tokens.len(), 5);
}

#[test]
fn streaming_deltas_add_up_to_the_text() {
    let mut m = stories();
    let opts = GenerateOptions {
        max_new_tokens: 40,
        ..Default::default()
    };
    let mut pieces: Vec<(usize, String)> = Vec::new();
    let mut cb = |e: &emorl_lm::TokenEvent<'_>| pieces.push((e.index, e.text.to_string()));
    let g = m
        .generate_stream(&["Once upon a time", "Tom"], &opts, None, Some(&mut cb))
        .unwrap();
    for (i, gen) in g.iter().enumerate() {
        let s: String = pieces
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(s, gen.text);
        assert_eq!(
            pieces.iter().filter(|(j, _)| *j == i).count(),
            gen.tokens.len()
        );
    }
}

#[test]
fn model_metadata_and_errors() {
    let mut m = stories();
    assert_eq!(m.n_layers(), 5);
    assert_eq!(m.hidden_size(), 64);
    assert_eq!(m.vocab_size(), 512);
    assert_eq!(m.kv_shape(), (4, 8));
    let bad = Tensor::from_slice(&[1i64, 600]).view([1, 2]);
    assert!(m.forward(&bad, None, None).is_err());
    let mask = Tensor::from_slice(&[1i64]).view([1, 1]);
    let ok = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
    assert!(m.forward(&ok, Some(&mask), None).is_err());
    let e = Model::load("/nonexistent/model.gguf", DType::F32).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.gguf"));
    let bad_opts = GenerateOptions {
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.0,
        },
        ..Default::default()
    };
    assert!(m.generate(&["x"], &bad_opts, None).is_err());
}

#[test]
fn truncated_model_file_errors_name_the_file() {
    let bytes = std::fs::read(common::stories260k()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = Model::load(&p, DType::F32).unwrap_err().to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
}

/// In a batch, a sequence that produced a stop token stays as it was: no
/// further tokens, log-probs or streamed events, while the others go on
/// exactly as they would alone.
#[test]
fn finished_sequences_stop_changing_in_a_batch() {
    let mut m = stories();
    let period = *m.tokenizer().encode(".", false).unwrap().last().unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 60,
        stop_tokens: vec![period],
        ..Default::default()
    };
    let prompts = ["Once upon a time", "One day,"];
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| m.generate(&[*p], &opts, None).unwrap().remove(0))
        .collect();
    let mut events = vec![0usize; prompts.len()];
    let mut cb = |e: &emorl_lm::TokenEvent<'_>| events[e.index] += 1;
    let batch = m
        .generate_stream(&prompts, &opts, None, Some(&mut cb))
        .unwrap();
    // The first prompt stops early (see stops_on_stop_tokens_and_respects_length);
    // the second goes on for longer, so the batch keeps stepping after the
    // first has finished.
    assert_eq!(batch[0].finish_reason, FinishReason::Stop);
    assert!(batch[1].tokens.len() > batch[0].tokens.len() + 2);
    for (i, (b, a)) in batch.iter().zip(&alone).enumerate() {
        assert_eq!(b.tokens, a.tokens, "prompt {i}");
        assert_eq!(b.text, a.text, "prompt {i}");
        assert_eq!(b.finish_reason, a.finish_reason, "prompt {i}");
        assert_eq!(b.logprobs.len(), b.tokens.len(), "prompt {i}");
        assert_eq!(events[i], b.tokens.len(), "prompt {i}");
        for (x, y) in b.logprobs.iter().zip(&a.logprobs) {
            assert!((x - y).abs() < 1e-3, "prompt {i}: {x} vs {y}");
        }
        if b.finish_reason == FinishReason::Stop {
            assert_eq!(b.tokens.iter().filter(|&&t| t == period).count(), 1);
            assert_eq!(*b.tokens.last().unwrap(), period);
        }
    }
}

/// A model without a chat template it can render uses the plain prompt when
/// asked for chat.
#[test]
fn chat_without_template_falls_back_to_plain_prompt() {
    let mut m = stories();
    assert!(m.tokenizer().chat_template().is_none());
    let opts = GenerateOptions {
        max_new_tokens: 3,
        chat: true,
        ..Default::default()
    };
    let plain = m.tokenizer().encode("Once upon a time", true).unwrap();
    assert_eq!(m.encode_prompt("Once upon a time", &opts).unwrap(), plain);
    let g = m.generate(&["Once upon a time"], &opts, None).unwrap();
    assert_eq!(g[0].prompt_tokens, plain);
}
