//! Hook points: freezing and gradient flow, prefix keys/values, adapters,
//! steering, read-out and logits processors.

mod common;

use emorl_lm::{DType, GenerateOptions, HookSite, Hooks, LogitBias, Model};
use tch::{Kind, Tensor};

fn stories() -> Model {
    Model::load(common::stories260k(), DType::F32).expect("load stories260K")
}

fn prompt(m: &Model) -> Tensor {
    let ids = m
        .tokenizer()
        .encode("Once upon a time, there was a girl", true)
        .unwrap();
    Tensor::from_slice(&ids.iter().map(|&x| x as i64).collect::<Vec<_>>()).view([1, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn freeze_parameters_get_no_grad_and_stay_bit_identical() {
    let mut m = stories();
    let before: Vec<(String, Tensor)> = m
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    for (n, t) in m.parameters() {
        assert!(!t.requires_grad(), "{n} requires grad");
    }
    let h = m.hidden_size() as i64;
    let steer = Tensor::zeros([h], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let gate = Tensor::ones([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let (nkv, hd) = m.kv_shape();
    let pk = (Tensor::randn(
        [1, nkv as i64, 2, hd as i64],
        (Kind::Float, tch::Device::Cpu),
    ) * 0.1)
        .set_requires_grad(true);
    let pv = (Tensor::randn(
        [1, nkv as i64, 2, hd as i64],
        (Kind::Float, tch::Device::Cpu),
    ) * 0.1)
        .set_requires_grad(true);
    let g2 = gate.shallow_clone();
    let hooks = Hooks::new()
        .with_steering(1, HookSite::AfterMlp, steer.shallow_clone(), 1.0)
        .with_adapter_fn(2, HookSite::AfterAttention, move |_l, _s, x: &Tensor| {
            Ok(x * &g2)
        })
        .with_prefix_kv(0, pk.shallow_clone(), pv.shallow_clone());
    let tokens = prompt(&m);
    let out = m.forward(&tokens, None, Some(&hooks)).unwrap();
    let t = tokens.size()[1];
    let targets = tokens.narrow(1, 1, t - 1).reshape([-1]);
    let loss = out
        .logits
        .narrow(1, 0, t - 1)
        .reshape([-1, m.vocab_size() as i64])
        .cross_entropy_for_logits(&targets);
    loss.backward();
    for (name, g) in [
        ("steer", &steer),
        ("gate", &gate),
        ("prefix key", &pk),
        ("prefix value", &pv),
    ] {
        let grad = g.grad();
        assert!(grad.defined(), "{name} got no gradient");
        assert!(
            grad.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name} gradient is zero"
        );
    }
    for ((n, t), (n0, t0)) in m.parameters().into_iter().zip(&before) {
        assert_eq!(&n, n0);
        assert!(!t.grad().defined(), "{n} has a gradient");
        assert!(!t.requires_grad());
        assert!(t.equal(t0), "{n} changed");
    }
}

#[test]
fn absent_and_empty_hooks_change_nothing() {
    let mut m = stories();
    let tokens = prompt(&m);
    let a = m.forward(&tokens, None, None).unwrap().logits;
    let b = m
        .forward(&tokens, None, Some(&Hooks::new()))
        .unwrap()
        .logits;
    assert!(a.equal(&b));
    // identity adapter and zero steering leave logits unchanged
    let h = m.hidden_size() as i64;
    let hooks = Hooks::new()
        .with_adapter_fn(0, HookSite::AfterMlp, |_l, _s, x: &Tensor| {
            Ok(x.shallow_clone())
        })
        .with_steering(
            3,
            HookSite::AfterAttention,
            Tensor::zeros([h], (Kind::Float, tch::Device::Cpu)),
            5.0,
        );
    let c = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    assert!(max_diff(&a, &c) == 0.0);
}

#[test]
fn steering_and_adapters_change_the_output() {
    let mut m = stories();
    let tokens = prompt(&m);
    let base = m.forward(&tokens, None, None).unwrap().logits;
    let h = m.hidden_size() as i64;
    let v = Tensor::ones([h], (Kind::Float, tch::Device::Cpu));
    let steered = m
        .forward(
            &tokens,
            None,
            Some(&Hooks::new().with_steering(2, HookSite::AfterMlp, v, 3.0)),
        )
        .unwrap()
        .logits;
    assert!(max_diff(&base, &steered) > 1e-2);
    let seen = std::cell::Cell::new(0);
    let hooks = Hooks::new().with_adapter_fn(4, HookSite::AfterMlp, |l, s, x: &Tensor| {
        assert_eq!((l, s), (4, HookSite::AfterMlp));
        seen.set(seen.get() + 1);
        Ok(x * 0.0)
    });
    let zeroed = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    assert_eq!(seen.get(), 1);
    // with a zero residual stream the final norm outputs zeros: all logits equal
    let spread = (zeroed.max() - zeroed.min()).double_value(&[]);
    assert!(spread < 1e-5, "spread {spread}");
}

#[test]
fn readout_returns_requested_hidden_states() {
    let mut m = stories();
    let tokens = prompt(&m);
    let n = m.n_layers();
    let hooks = Hooks::new().with_readout(0).with_readout(2).with_readout(n);
    let out = m.forward(&tokens, None, Some(&hooks)).unwrap();
    let idx: Vec<usize> = out.hidden.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![0, 2, n]);
    let t = tokens.size()[1];
    for (_, h) in &out.hidden {
        assert_eq!(h.size(), vec![1, t, m.hidden_size() as i64]);
    }
    // A read-out-only pass stops at the deepest read-out and gives the same
    // hidden states bit for bit, with no logits; the cache stays empty.
    let only = m.read_out(&tokens, None, &hooks).unwrap();
    assert_eq!(only.len(), out.hidden.len());
    for ((i, a), (j, b)) in only.iter().zip(&out.hidden) {
        assert_eq!(i, j);
        assert!(a.equal(b), "read-out {i} differs");
    }
    let mid = m
        .read_out(&tokens, None, &Hooks::new().with_readout(2))
        .unwrap();
    assert!(mid[0].1.equal(&out.hidden[1].1));
    assert!(m
        .read_out(&tokens, None, &Hooks::new().with_readout(n + 1))
        .is_err());
    // read-out 0 is the token embedding
    let embed = m
        .parameters()
        .into_iter()
        .find(|(name, _)| name == "token_embd.weight")
        .unwrap()
        .1
        .shallow_clone();
    let expected = embed.index_select(0, &tokens.view([-1])).unsqueeze(0);
    assert!(out.hidden[0].1.equal(&expected));
    // steering at block 1's output shows up in read-out 2
    let h = m.hidden_size() as i64;
    let v = Tensor::ones([h], (Kind::Float, tch::Device::Cpu));
    let hooks2 = Hooks::new()
        .with_readout(2)
        .with_steering(1, HookSite::AfterMlp, v, 1.0);
    let out2 = m.forward(&tokens, None, Some(&hooks2)).unwrap();
    assert!(max_diff(&out.hidden[1].1, &out2.hidden[0].1) > 0.5);
    assert!(m
        .forward(&tokens, None, Some(&Hooks::new().with_readout(n + 1)))
        .is_err());
    assert!(m
        .forward(
            &tokens,
            None,
            Some(&Hooks::new().with_steering(
                n,
                HookSite::AfterMlp,
                Tensor::zeros([h], (Kind::Float, tch::Device::Cpu)),
                1.0
            ))
        )
        .is_err());
}

#[test]
fn logits_processor_bias_and_temperature() {
    let mut m = stories();
    let tokens = prompt(&m);
    let base = m.forward(&tokens, None, None).unwrap().logits;
    let hooks = Hooks::new().with_logits_processor(LogitBias {
        bias: None,
        temperature: 2.0,
    });
    let half = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    assert!(max_diff(&(&base / 2.0), &half) < 1e-6);
    // a large bias on one token makes greedy decoding produce only it
    let target = m.tokenizer().encode("cat", false).unwrap()[0] as i64;
    let bias = Tensor::zeros([m.vocab_size() as i64], (Kind::Float, tch::Device::Cpu));
    let _ = bias.get(target).fill_(100.0);
    let hooks = Hooks::new().with_logits_processor(LogitBias {
        bias: Some(bias),
        temperature: 1.0,
    });
    let opts = GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let g = m
        .generate(&["Once upon a time"], &opts, Some(&hooks))
        .unwrap();
    assert!(
        g[0].tokens.iter().all(|&t| t as i64 == target),
        "{:?}",
        g[0].tokens
    );
    // closures work as processors too
    let hooks = Hooks::new().with_logits_fn(|l: &Tensor| Ok(l * 0.0));
    let flat = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    assert_eq!(flat.abs().max().double_value(&[]), 0.0);
}

#[test]
fn prefix_kv_is_prepended_and_consistent_with_the_cache() {
    let mut m = stories();
    let tokens = prompt(&m);
    let (nkv, hd) = m.kv_shape();
    let opts = (Kind::Float, tch::Device::Cpu);
    let mut hooks = Hooks::new();
    for l in 0..m.n_layers() {
        hooks = hooks.with_prefix_kv(
            l,
            Tensor::randn([1, nkv as i64, 3, hd as i64], opts),
            Tensor::randn([1, nkv as i64, 3, hd as i64], opts),
        );
    }
    let base = m.forward(&tokens, None, None).unwrap().logits;
    let full = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    assert!(max_diff(&base, &full) > 1e-3, "prefix had no effect");
    // prefill + one-token steps with the prefix in the cache give the same logits
    m.clear_cache();
    let t = tokens.size()[1];
    let mut parts = vec![
        m.forward_cached(&tokens.narrow(1, 0, 4), None, Some(&hooks))
            .unwrap()
            .logits,
    ];
    for i in 4..t {
        parts.push(
            m.forward_cached(&tokens.narrow(1, i, 1), None, Some(&hooks))
                .unwrap()
                .logits,
        );
    }
    m.clear_cache();
    let stepped = Tensor::cat(&parts, 1);
    assert!(max_diff(&stepped, &full) < 1e-4);
    // zero-length prefixes change nothing
    let mut empty = Hooks::new();
    for l in 0..m.n_layers() {
        empty = empty.with_prefix_kv(
            l,
            Tensor::zeros([1, nkv as i64, 0, hd as i64], opts),
            Tensor::zeros([1, nkv as i64, 0, hd as i64], opts),
        );
    }
    let same = m.forward(&tokens, None, Some(&empty)).unwrap().logits;
    assert!(max_diff(&same, &base) < 1e-5);
    // wrong shapes are errors
    let bad = Hooks::new().with_prefix_kv(
        0,
        Tensor::zeros([1, 1, 2, hd as i64], opts),
        Tensor::zeros([1, 1, 2, hd as i64], opts),
    );
    assert!(m.forward(&tokens, None, Some(&bad)).is_err());
    // generation with a prefix: batched equals single
    let g_opts = GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let batch = m
        .generate(&["Once upon a time", "Tom"], &g_opts, Some(&hooks))
        .unwrap();
    let single = m.generate(&["Tom"], &g_opts, Some(&hooks)).unwrap();
    assert_eq!(batch[1].tokens, single[0].tokens);
}

/// A cached prefill of the first `split` tokens, then one token at a time,
/// gives `full`'s logits (one pass over `tokens` with `hooks`), for each split.
fn assert_cached_steps_match(
    m: &mut Model,
    tokens: &Tensor,
    hooks: &Hooks,
    full: &Tensor,
    splits: &[usize],
) {
    let t = tokens.size()[1];
    for &split in splits {
        m.clear_cache();
        let head = m
            .forward_cached(&tokens.narrow(1, 0, split as i64), None, Some(hooks))
            .unwrap()
            .logits;
        let mut parts = vec![head];
        for c in split as i64..t {
            let step = m
                .forward_cached(&tokens.narrow(1, c, 1), None, Some(hooks))
                .unwrap();
            parts.push(step.logits);
        }
        m.clear_cache();
        let cached = Tensor::cat(&parts, 1);
        let d = max_diff(&cached, full);
        assert!(d < 1e-4, "prefill of {split}: {d}");
    }
}

/// Hooks made by `from(k)` act on columns `k..` only: earlier columns' logits
/// are the plain model's bit for bit, later ones move; `from(0)` equals
/// `everywhere`, a column past the end changes nothing, and cached passes
/// split before, at or after `k` agree with one pass.
fn check_acts_from_column(
    m: &mut Model,
    tokens: &Tensor,
    k: usize,
    from: impl Fn(usize) -> Hooks<'static>,
    everywhere: Hooks,
) {
    let t = tokens.size()[1];
    let base = m.forward(tokens, None, None).unwrap().logits;
    let hooked = m.forward(tokens, None, Some(&from(k))).unwrap().logits;
    assert!(hooked
        .narrow(1, 0, k as i64)
        .equal(&base.narrow(1, 0, k as i64)));
    let rest = t - k as i64;
    assert!(
        max_diff(
            &hooked.narrow(1, k as i64, rest),
            &base.narrow(1, k as i64, rest)
        ) > 1e-2
    );
    let a = m.forward(tokens, None, Some(&everywhere)).unwrap().logits;
    let b = m.forward(tokens, None, Some(&from(0))).unwrap().logits;
    assert!(a.equal(&b));
    let none = m
        .forward(tokens, None, Some(&from(t as usize)))
        .unwrap()
        .logits;
    assert!(none.equal(&base));
    assert_cached_steps_match(m, tokens, &from(k), &hooked, &[2, k, k + 2]);
}

#[test]
fn steering_from_a_column_leaves_earlier_columns_alone() {
    let mut m = stories();
    let tokens = prompt(&m);
    let t = tokens.size()[1];
    let k = 4;
    let h = m.hidden_size() as i64;
    let v = Tensor::randn([h], (Kind::Float, tch::Device::Cpu));
    let from = |c: usize| Hooks::new().with_steering_from(2, HookSite::AfterMlp, v.copy(), 3.0, c);
    let all = Hooks::new().with_steering(2, HookSite::AfterMlp, v.copy(), 3.0);
    check_acts_from_column(&mut m, &tokens, k, from, all);
    let rest = t - k as i64;
    // Gradients reach the vector through the steered columns only.
    let g = Tensor::zeros([h], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let hooks = Hooks::new().with_steering_from(2, HookSite::AfterMlp, g.shallow_clone(), 1.0, k);
    let out = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    out.narrow(1, 0, k as i64).sum(Kind::Float).backward();
    assert!(!g.grad().defined() || g.grad().abs().max().double_value(&[]) == 0.0);
    let out = m.forward(&tokens, None, Some(&hooks)).unwrap().logits;
    out.narrow(1, k as i64, rest).sum(Kind::Float).backward();
    assert!(g.grad().abs().max().double_value(&[]) > 0.0);
}

#[test]
fn adapter_from_a_column_leaves_earlier_columns_alone() {
    let mut m = stories();
    let tokens = prompt(&m);
    let k = 4usize;
    let h = m.hidden_size() as i64;
    let w = Tensor::randn([h, h], (Kind::Float, tch::Device::Cpu)) * 0.3;
    let adapter = |w: Tensor| move |_: usize, _: HookSite, x: &Tensor| Ok(x + x.matmul(&w).tanh());
    let from =
        |c: usize| Hooks::new().with_adapter_from(2, HookSite::AfterMlp, adapter(w.copy()), c);
    let all = Hooks::new().with_adapter(2, HookSite::AfterMlp, adapter(w.copy()));
    check_acts_from_column(&mut m, &tokens, k, from, all);
    // An adapter that changes the shape of its columns is refused.
    let bad = Hooks::new().with_adapter_from(
        2,
        HookSite::AfterMlp,
        |_: usize, _: HookSite, x: &Tensor| Ok(x.narrow(2, 0, 1)),
        k,
    );
    assert!(m.forward(&tokens, None, Some(&bad)).is_err());
}

/// A q/k/v delta (a LoRA on the attention projections): zero changes
/// nothing bit for bit, a nonzero one changes the logits and receives
/// gradients, and the cached decode equals the full forward with it.
#[test]
fn qkv_deltas_act_on_the_attention_projections() {
    let mut m = stories();
    let t = prompt(&m);
    let plain = m.forward(&t, None, None).unwrap().logits;
    let w = m.qkv_width() as i64;
    let h = m.hidden_size() as i64;
    let zero = Hooks::new().with_qkv_delta(1, move |x: &Tensor| {
        let s = x.size();
        Ok(Tensor::zeros([s[0], s[1], w], (Kind::Float, x.device())))
    });
    let same = m.forward(&t, None, Some(&zero)).unwrap().logits;
    assert_eq!(max_diff(&plain, &same), 0.0);
    let a = (Tensor::randn([h, 2], (Kind::Float, tch::Device::Cpu)) * 0.3).set_requires_grad(true);
    let b = (Tensor::randn([2, w], (Kind::Float, tch::Device::Cpu)) * 0.3).set_requires_grad(true);
    let (a2, b2) = (a.shallow_clone(), b.shallow_clone());
    let lora = Hooks::new().with_qkv_delta(0, move |x: &Tensor| Ok(x.matmul(&a2).matmul(&b2)));
    let out = m.forward(&t, None, Some(&lora)).unwrap().logits;
    assert!(max_diff(&plain, &out) > 1e-3);
    out.sum(Kind::Float).backward();
    assert!(b.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // Cached: prompt minus its last token, then the last token alone.
    let n = t.size()[1];
    let _g = tch::no_grad_guard();
    m.clear_cache();
    m.forward_cached(&t.narrow(1, 0, n - 1), None, Some(&lora))
        .unwrap();
    let last = m
        .forward_cached(&t.narrow(1, n - 1, 1), None, Some(&lora))
        .unwrap()
        .logits;
    m.clear_cache();
    let full_last = out.detach().select(1, n - 1);
    assert!(max_diff(&last.select(1, 0), &full_last) < 1e-4);
}
