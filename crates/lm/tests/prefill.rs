//! Generation's prefill shortcuts (last-position logits; the opt-in shared
//! prefill of repeated prompts) give the tokens and log-probs of the
//! reference path (all-position logits, every row prefilled), on
//! stories260K, greedy and sampled.

mod common;

use emorl_lm::{DType, GenerateOptions, Generation, HookSite, Hooks, LogitBias, Model, Sampling};
use tch::{Device, Kind, Tensor};

fn stories() -> Model {
    Model::load(common::stories260k(), DType::F32).expect("load stories260K")
}

/// Four distinct prompts of different lengths (so left padding), each
/// repeated, interleaved, as RL sampling batches them.
fn rl_batch(m: &Model) -> Vec<Vec<u32>> {
    let opts = GenerateOptions::default();
    let distinct: Vec<Vec<u32>> = [
        "Once upon a time",
        "Lily and Ben went to the park to play with",
        "Tom",
        "The little dog was very happy because",
    ]
    .iter()
    .map(|p| m.encode_prompt(p, &opts).unwrap())
    .collect();
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.extend(distinct.iter().cloned());
    }
    rows.push(distinct[1].clone());
    rows
}

fn both_paths(
    m: &mut Model,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    hooks: Option<&Hooks<'_>>,
) -> (Vec<Generation>, Vec<Generation>) {
    m.set_reference_generation(true);
    let reference = m.generate_from_tokens(prompts, opts, hooks, None).unwrap();
    m.set_reference_generation(false);
    let fast = m.generate_from_tokens(prompts, opts, hooks, None).unwrap();
    (reference, fast)
}

/// Reference path against shared prefill of repeated prompts (which also
/// uses last-position logits).
fn shared_paths(
    m: &mut Model,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    hooks: Option<&Hooks<'_>>,
) -> (Vec<Generation>, Vec<Generation>) {
    m.set_share_repeated_prompts(true);
    let out = both_paths(m, prompts, opts, hooks);
    m.set_share_repeated_prompts(false);
    out
}

/// Same tokens and texts, log-probs equal up to float rounding: the output
/// layer's matrix product over `[batch, 1, hidden]` may round differently
/// from the one over `[batch, seq, hidden]` (another kernel or split for a
/// smaller matrix). Prints how many log-probs are bitwise equal.
fn assert_same(reference: &[Generation], fast: &[Generation]) {
    assert_eq!(reference.len(), fast.len());
    let (mut bitwise, mut total) = (0, 0);
    for (i, (r, f)) in reference.iter().zip(fast).enumerate() {
        assert!(!r.tokens.is_empty());
        assert_eq!(r.tokens, f.tokens, "row {i}: tokens differ");
        assert_eq!(r.text, f.text);
        assert_eq!(r.finish_reason, f.finish_reason);
        assert_eq!(r.logprobs.len(), f.logprobs.len());
        for (a, b) in r.logprobs.iter().zip(&f.logprobs) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "row {i}: {a} vs {b}"
            );
            bitwise += usize::from(a.to_bits() == b.to_bits());
            total += 1;
        }
    }
    eprintln!("{bitwise}/{total} log-probs bitwise equal");
}

fn sampled(seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 24,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed,
        stop_on_eos: false,
        ..Default::default()
    }
}

#[test]
fn prefill_shortcuts_keep_greedy_tokens_and_logprobs() {
    let mut m = stories();
    let prompts = rl_batch(&m);
    let opts = GenerateOptions {
        max_new_tokens: 24,
        ..Default::default()
    };
    let (r, f) = both_paths(&mut m, &prompts, &opts, None);
    assert_same(&r, &f);
    // Rows of the same prompt agree under greedy decoding.
    assert_eq!(f[0].tokens, f[4].tokens);
    assert_eq!(f[1].tokens, f[12].tokens);
    let (r, f) = shared_paths(&mut m, &prompts, &opts, None);
    assert_same(&r, &f);
}

#[test]
fn prefill_shortcuts_keep_sampled_tokens_and_logprobs() {
    let mut m = stories();
    let prompts = rl_batch(&m);
    for seed in [3, 11] {
        let (r, f) = both_paths(&mut m, &prompts, &sampled(seed), None);
        assert_same(&r, &f);
    }
    // Repeated prompts still get different samples (their own generators).
    let (_, f) = both_paths(&mut m, &prompts, &sampled(3), None);
    assert!((0..4).any(|i| f[i].tokens != f[i + 4].tokens));
    // Equal prompts only, and no repeats at all.
    let same = vec![prompts[0].clone(); 5];
    let (r, f) = both_paths(&mut m, &same, &sampled(5), None);
    assert_same(&r, &f);
    let single = vec![prompts[1].clone()];
    let (r, f) = both_paths(&mut m, &single, &sampled(5), None);
    assert_same(&r, &f);
    let distinct = prompts[..4].to_vec();
    let (r, f) = both_paths(&mut m, &distinct, &sampled(5), None);
    assert_same(&r, &f);
    for (batch, seed) in [(&prompts, 3), (&prompts, 11), (&same, 5), (&distinct, 5)] {
        let (r, f) = shared_paths(&mut m, batch, &sampled(seed), None);
        assert_same(&r, &f);
    }
}

#[test]
fn prefill_shortcuts_keep_results_with_per_row_hooks() {
    let mut m = stories();
    let prompts = rl_batch(&m);
    let b = prompts.len() as i64;
    let (vocab, hidden) = (m.vocab_size() as i64, m.hidden_size() as i64);
    let _g = tch::no_grad_guard();
    let bias = Tensor::randn([b, vocab], (Kind::Float, Device::Cpu));
    let steer = Tensor::randn([b, 1, hidden], (Kind::Float, Device::Cpu));
    // Per-row steering and logit bias: rows of the same prompt differ, so
    // they must not share a prefill.
    let hooks = Hooks::new()
        .with_steering(1, HookSite::AfterMlp, steer.shallow_clone(), 0.5)
        .with_logits_processor(LogitBias {
            bias: Some(bias.shallow_clone()),
            temperature: 1.3,
        })
        .with_readout(2);
    for opts in [sampled(9), GenerateOptions::default()] {
        let (r, f) = both_paths(&mut m, &prompts, &opts, Some(&hooks));
        assert_same(&r, &f);
        // Per-row hooks turn the shared prefill off.
        let (r, f) = shared_paths(&mut m, &prompts, &opts, Some(&hooks));
        assert_same(&r, &f);
    }
    // A per-row logits processor alone (no hidden-state hooks) lets the
    // shared prefill run: it then processes the prefill's last logits after
    // they are copied to every row, so every row still gets its own bias.
    let processor_only = Hooks::new()
        .with_logits_processor(LogitBias {
            bias: Some(bias.shallow_clone()),
            temperature: 1.3,
        })
        .with_readout(2);
    for opts in [sampled(9), sampled(4), GenerateOptions::default()] {
        let (r, f) = shared_paths(&mut m, &prompts, &opts, Some(&processor_only));
        assert_same(&r, &f);
    }
    // A logits processor sees the sampled position's logits unchanged:
    // record what it is given at prefill on the reference, the fast and
    // the shared path.
    let seen = std::cell::RefCell::new(Vec::<Tensor>::new());
    let hooks = Hooks::new().with_logits_fn(|l: &Tensor| {
        seen.borrow_mut().push(l.shallow_clone());
        Ok(l.shallow_clone())
    });
    let opts = GenerateOptions {
        max_new_tokens: 1,
        ..Default::default()
    };
    let (r, f) = both_paths(&mut m, &prompts, &opts, Some(&hooks));
    assert_same(&r, &f);
    let (_, shared) = shared_paths(&mut m, &prompts, &opts, Some(&hooks));
    assert_same(&r, &shared);
    drop(hooks);
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 4);
    let (all, last, shared) = (&seen[0], &seen[1], &seen[3]);
    let len = all.size()[1];
    assert_eq!(last.size(), [b, 1, vocab]);
    assert_eq!(shared.size(), [b, 1, vocab]);
    assert!(all.narrow(1, len - 1, 1).allclose(last, 1e-5, 1e-5, false));
    assert!(last.allclose(shared, 1e-5, 1e-5, false));
}

#[test]
fn steering_of_the_response_only_keeps_the_shared_prefill_exact() {
    let mut m = stories();
    let prompts = rl_batch(&m);
    let b = prompts.len() as i64;
    let hidden = m.hidden_size() as i64;
    let _g = tch::no_grad_guard();
    let steer = Tensor::randn([b, 1, hidden], (Kind::Float, Device::Cpu));
    // Per-row steering of the response positions only: the prompts' hidden
    // states are the frozen model's, so repeated prompts may share a prefill.
    let start = emorl_lm::response_start(&prompts);
    assert_eq!(start, prompts.iter().map(Vec::len).max().unwrap());
    let hooks =
        Hooks::new().with_steering_from(1, HookSite::AfterMlp, steer.shallow_clone(), 2.0, start);
    let opts = sampled(7);
    let (r, f) = both_paths(&mut m, &prompts, &opts, Some(&hooks));
    assert_same(&r, &f);
    let (r, shared) = shared_paths(&mut m, &prompts, &opts, Some(&hooks));
    assert_same(&r, &shared);
    // The first token comes from the unsteered prompt; the steering acts on
    // the later ones.
    let (plain, _) = both_paths(&mut m, &prompts, &opts, None);
    for (p, s) in plain.iter().zip(&r) {
        assert_eq!(p.logprobs[0], s.logprobs[0]);
    }
    assert!(plain
        .iter()
        .zip(&r)
        .any(|(p, s)| p.logprobs[1] != s.logprobs[1]));
}

#[test]
fn last_position_logits_match_the_full_forward() {
    let mut m = stories();
    let prompts = rl_batch(&m);
    let len = prompts.iter().map(|p| p.len()).max().unwrap();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for p in &prompts {
        flat.extend(std::iter::repeat_n(0i64, len - p.len()));
        flat.extend(p.iter().map(|&t| t as i64));
        mask.extend(std::iter::repeat_n(0i64, len - p.len()));
        mask.extend(std::iter::repeat_n(1i64, p.len()));
    }
    let shape = [prompts.len() as i64, len as i64];
    let tokens = Tensor::from_slice(&flat).view(shape);
    let mask = Tensor::from_slice(&mask).view(shape);
    let hooks = Hooks::new().with_readout(3);
    let full = m.forward(&tokens, Some(&mask), Some(&hooks)).unwrap();
    m.clear_cache();
    let last = m
        .forward_cached_scoped(
            &tokens,
            Some(&mask),
            Some(&hooks),
            emorl_lm::LogitsScope::Last,
        )
        .unwrap();
    m.clear_cache();
    assert_eq!(last.logits.size(), [shape[0], 1, m.vocab_size() as i64]);
    assert!(full.logits.narrow(1, len as i64 - 1, 1).equal(&last.logits));
    // Read-outs still cover every position.
    assert_eq!(last.hidden.len(), 1);
    assert!(full.hidden[0].1.equal(&last.hidden[0].1));
}

/// With packed weights, decode steps run on the host and the rows of a
/// repeated prompt read its shared KV cache in place (instead of copies):
/// the tokens and log-probs are those of prefilling every row.
#[test]
fn host_decode_reads_shared_prompt_caches_like_copies() {
    let mut m = stories();
    m.pack_weights(emorl_lm::PackPlan::uniform(Some(emorl_lm::Packing::Int8)))
        .expect("pack");
    m.set_host_decode(emorl_lm::HostDecode::Packed);
    m.set_packed_generation(true);
    let prompts = rl_batch(&m);
    for opts in [sampled(3), sampled(11), GenerateOptions::default()] {
        let every_row = m.generate_from_tokens(&prompts, &opts, None, None).unwrap();
        m.set_share_repeated_prompts(true);
        let shared = m.generate_from_tokens(&prompts, &opts, None, None).unwrap();
        m.set_share_repeated_prompts(false);
        assert_same(&every_row, &shared);
    }
}
