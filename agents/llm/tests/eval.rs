//! Tests of the evaluation library (marker metric, perplexity, dialogue
//! evaluation, tables) on stories260K.

mod common;
use common::model;

use emorl_agents_llm::eval::{
    compare_dialogue, count_markers, dialogue_comparison_table, dialogue_summary_table,
    emotion_markers, evaluate_dialogue, forced_emotion, generate_under, generations_perplexity,
    marker_effect, marker_rate, marker_run, marker_table, perplexity, perplexity_table,
    targets_table, words, DialogueEval, EmotionCondition, EmotionEffect, Perplexity, EVAL_PROMPTS,
    FEAR_MARKERS,
};
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent, EMOTIONS};
use emorl_envs_dialogue::{DialogueConfig, EpisodeMetrics};
use emorl_lm::{GenerateOptions, Sampling};
use tch::Device;

fn agent(kind: AgentKind, max_new_tokens: usize) -> LlmAgent {
    let config = AgentConfig {
        max_new_tokens,
        temperature: 1.0,
        ..AgentConfig::default()
    };
    LlmAgent::new(model(), kind, config).unwrap()
}

#[test]
fn marker_counter_is_whole_word_and_case_insensitive() {
    assert_eq!(
        words("Don’t PANIC!  It's fine... 'quoted'"),
        ["don't", "panic", "it's", "fine", "quoted"]
    );
    let m = FEAR_MARKERS;
    // Case, punctuation, repeats.
    assert_eq!(count_markers("Danger! DANGER, danger?", m), 3);
    // Whole words only: no matches inside longer words.
    assert_eq!(count_markers("endangered scaredy riskiness", m), 0);
    assert_eq!(count_markers("", m), 0);
    // Several different markers.
    assert_eq!(
        count_markers("Be careful: it is risky and I am afraid.", m),
        3
    );
    // Multi-word markers match consecutive words only.
    let c = emotion_markers("curiosity").unwrap();
    assert_eq!(count_markers("Let us find out. Find it out.", c), 1);
    // Punctuation between words is ignored.
    assert_eq!(count_markers("What if it rains? what, if", c), 2);
    assert_eq!(count_markers("what is it", c), 0);
    // Rate per 100 words.
    assert!((marker_rate("afraid of the dark", m) - 25.0).abs() < 1e-12);
    assert_eq!(marker_rate("  ...  ", m), 0.0);
    // Every emotion has a lexicon; the lexicons do not share words.
    for (i, a) in EMOTIONS.iter().enumerate() {
        let la = emotion_markers(a).unwrap();
        assert!(la.len() >= 20, "{a}: {} markers", la.len());
        for b in &EMOTIONS[i + 1..] {
            let lb = emotion_markers(b).unwrap();
            assert!(
                la.iter().all(|w| !lb.contains(w)),
                "{a} and {b} share a marker"
            );
        }
    }
    assert!(emotion_markers("boredom").is_none());
    // The evaluation prompts carry no emotion's markers.
    for p in EVAL_PROMPTS {
        for e in EMOTIONS {
            assert_eq!(
                count_markers(p, emotion_markers(e).unwrap()),
                0,
                "{p} / {e}"
            );
        }
    }
}

#[test]
fn forced_states_set_one_emotion() {
    let n = forced_emotion(EmotionCondition::Neutral, 3, Device::Cpu).unwrap();
    assert_eq!(n.state.phasic.size(), [3, 4]);
    assert_eq!(
        n.state.phasic.abs().sum(tch::Kind::Float).double_value(&[]),
        0.0
    );
    let j = forced_emotion(EmotionCondition::Joy, 2, Device::Cpu).unwrap();
    let row = Vec::<f32>::try_from(j.state.phasic.get(1)).unwrap();
    assert_eq!(row, [0.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        Vec::<f32>::try_from(j.state.tonic.get(0)).unwrap(),
        [0.0, 1.0]
    );
    let erm = Vec::<f32>::try_from(j.erm.as_ref().unwrap().get(0)).unwrap();
    assert_eq!(erm, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        EmotionCondition::from_name("anger").unwrap(),
        EmotionCondition::Anger
    );
    assert!(EmotionCondition::from_name("boredom").is_err());
    assert!(forced_emotion(EmotionCondition::Fear, 0, Device::Cpu).is_err());
}

#[test]
fn llm_base_marker_effect_is_exactly_zero() {
    let mut a = agent(AgentKind::Base, 12);
    let run = marker_run(&mut a, &EVAL_PROMPTS[..4], 2, 5, 12).unwrap();
    assert_eq!(run.effects.len(), 4);
    assert_eq!(run.generations.len(), 5);
    let neutral: Vec<&Vec<u32>> = run.generations[0].1.iter().map(|g| &g.tokens).collect();
    assert_eq!(neutral.len(), 8);
    for (cond, gens) in &run.generations[1..] {
        let toks: Vec<&Vec<u32>> = gens.iter().map(|g| &g.tokens).collect();
        assert_eq!(toks, neutral, "{cond:?}: llm-base must ignore the state");
    }
    // Samples of one prompt differ (distinct streams per row).
    assert_ne!(neutral[0], neutral[1]);
    for e in &run.effects {
        assert_eq!(e.neutral_counts, e.emotional_counts);
        assert_eq!(e.d, 0.0, "{}", e.emotion);
        assert_eq!(e.p, 1.0, "{}", e.emotion);
    }
}

#[test]
fn strong_fear_bias_gives_a_large_fear_marker_effect() {
    let mut a = agent(AgentKind::Erm, 16);
    // stories260K's 512-token vocabulary spells words in pieces: bias the
    // ERM's fear row of the vocabulary bias by +6 on the pieces of
    // " scared", so only a high-fear state moves the distribution.
    let pieces = a.model().tokenizer().encode(" scared", false).unwrap();
    assert!(pieces.len() > 1);
    {
        let _g = tch::no_grad_guard();
        let (_, bias) = a
            .named_tensors()
            .into_iter()
            .find(|(n, _)| n == "erm.logit_bias")
            .expect("erm.logit_bias");
        let fear_row = bias.get(0);
        for id in &pieces {
            let _ = fear_row.get(i64::from(*id)).fill_(6.0);
        }
    }
    let effects = marker_effect(&mut a, &EVAL_PROMPTS[..6], 2, 1, 16).unwrap();
    let fear = effects.iter().find(|e| e.emotion == "fear").unwrap();
    assert!(
        fear.d >= 2.0 && fear.p < 1e-3,
        "fear d = {}, p = {}, neutral {:?}, fear {:?}",
        fear.d,
        fear.p,
        fear.neutral_counts,
        fear.emotional_counts
    );
    assert!(fear.emotional_mean() > fear.neutral_mean() + 10.0);
    // The other emotions' states do not touch the fear row: their own
    // markers are unchanged by construction of the bias.
    for e in effects.iter().filter(|e| e.emotion != "fear") {
        assert_eq!(e.d, 0.0, "{}: d = {}", e.emotion, e.d);
    }
}

#[test]
fn model_samples_have_lower_perplexity_than_shuffled_tokens() {
    let mut m = model();
    let opts = GenerateOptions {
        max_new_tokens: 24,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed: 3,
        stop_on_eos: false,
        ..GenerateOptions::default()
    };
    let prompts = [
        "Once upon a time",
        "The little dog",
        "Lily wanted to",
        "One day",
    ];
    let gens = m.generate(&prompts, &opts, None).unwrap();
    let refs: Vec<&_> = gens.iter().collect();
    let own = generations_perplexity(&mut m, &refs).unwrap();
    assert_eq!(own.tokens, 4 * 24);
    assert_eq!(own.per_text_nll.len(), 4);
    // The scorer agrees with the sampler's own log-probabilities (no hooks,
    // temperature 1): same tokens, same model.
    let sampled_nll: f64 = gens
        .iter()
        .flat_map(|g| g.logprobs.iter().map(|&l| -f64::from(l)))
        .sum::<f64>()
        / own.tokens as f64;
    assert!(
        (own.mean_nll - sampled_nll).abs() < 1e-3,
        "scored {} vs sampled {}",
        own.mean_nll,
        sampled_nll
    );
    // Shuffle every response's tokens (a fixed permutation).
    let shuffled: Vec<(Vec<u32>, Vec<u32>)> = gens
        .iter()
        .map(|g| {
            let n = g.tokens.len();
            let r = (0..n).map(|i| g.tokens[(i * 7 + 3) % n]).collect();
            (g.prompt_tokens.clone(), r)
        })
        .collect();
    let shuf = perplexity(&mut m, &shuffled).unwrap();
    assert_eq!(shuf.tokens, own.tokens);
    assert!(
        own.ppl * 1.5 < shuf.ppl,
        "own {} vs shuffled {}",
        own.ppl,
        shuf.ppl
    );
    // Padding-invariant: scoring one pair alone gives its batched value.
    let alone = perplexity(&mut m, &shuffled[2..3]).unwrap();
    assert!((alone.mean_nll - shuf.per_text_nll[2]).abs() < 1e-4);
    // Empty responses are skipped; nothing to score is an error.
    let p = perplexity(&mut m, &[(gens[0].prompt_tokens.clone(), vec![])]);
    assert!(p.is_err());
    assert!(perplexity(&mut m, &[(vec![], vec![1])]).is_err());
}

#[test]
fn dialogue_evaluation_compares_with_both_baselines() {
    let seeds = [0u64, 1, 2];
    let config = DialogueConfig {
        max_turns: 2,
        ..DialogueConfig::default()
    };
    let mut evals = Vec::new();
    for kind in [AgentKind::Base, AgentKind::StaticPrefix, AgentKind::Steer] {
        let mut a = agent(kind, 8);
        let e = evaluate_dialogue(&mut a, &config, &seeds).unwrap();
        assert_eq!(e.agent, kind.id());
        assert_eq!(e.episodes.len(), 3);
        for m in &e.episodes {
            assert!((1..=2).contains(&m.turns));
            assert!((0.0..=1.0).contains(&m.safety_rate));
        }
        evals.push(e);
    }
    let cmp = compare_dialogue(&evals).unwrap();
    // vs llm-base: static-prefix and steer; vs llm-static-prefix: base and steer; 3 metrics each.
    assert_eq!(cmp.len(), 2 * 2 * 3);
    let c = cmp
        .iter()
        .find(|c| c.agent == "llm-steer" && c.baseline == "llm-base" && c.metric == "return")
        .unwrap();
    let mean = |x: Vec<f64>| x.iter().sum::<f64>() / x.len() as f64;
    assert!((c.comparison.control.mean - mean(evals[0].returns())).abs() < 1e-12);
    assert!((c.comparison.treatment.mean - mean(evals[2].returns())).abs() < 1e-12);
    let t = dialogue_comparison_table(&cmp).unwrap();
    assert_eq!(t.rows.len(), 12);
    assert!(t.rows.iter().all(|r| r.comparison.is_some()));
    let s = dialogue_summary_table(&evals).unwrap();
    assert_eq!(s.rows.len(), 3);
}

fn effect(emotion: &str, neutral: &[f64], emotional: &[f64]) -> EmotionEffect {
    EmotionEffect::from_counts(emotion, neutral.to_vec(), emotional.to_vec()).unwrap()
}

fn episode(ret: f64, safety: f64, help: f64) -> EpisodeMetrics {
    EpisodeMetrics {
        turns: 2,
        total_reward: ret,
        safety_rate: safety,
        helpfulness: help,
        ..EpisodeMetrics::default()
    }
}

#[test]
fn tables_have_the_expected_rows() {
    // Marker table: agent × emotion rows, upstream d for matching modules.
    let effects = |shift: f64| -> Vec<EmotionEffect> {
        EMOTIONS
            .iter()
            .map(|e| {
                effect(
                    e,
                    &[0.0, 1.0, 2.0, 1.0],
                    &[shift, 1.0 + shift, 2.0 + shift, 1.0],
                )
            })
            .collect()
    };
    let mt = marker_table(&[
        ("llm-base".to_string(), effects(0.0)),
        ("llm-steer".to_string(), effects(3.0)),
    ])
    .unwrap();
    assert_eq!(mt.rows.len(), 8);
    assert_eq!(mt.columns.len(), mt.rows[0].cells.len());
    let md = mt.to_markdown();
    assert!(md.contains("| llm-steer | fear | 4 |"), "{md}");
    assert!(md.contains("| 0.91 | yes |"), "{md}");
    assert!(
        md.contains("| llm-base | joy | 4 | 1.000 | 1.000 | 0.000 |"),
        "{md}"
    );
    let back = emorl_stats::Table::from_json(&mt.to_json().unwrap()).unwrap();
    assert_eq!(back, mt);

    // Perplexity table: ratio to llm-base and the +10% flag.
    let ppl = |v: f64| Perplexity {
        tokens: 10,
        mean_nll: v.ln(),
        ppl: v,
        per_text_nll: vec![v.ln()],
    };
    let pt = perplexity_table(&[
        ("llm-base".to_string(), ppl(10.0)),
        ("llm-prefix".to_string(), ppl(10.5)),
        ("llm-gate".to_string(), ppl(12.0)),
    ])
    .unwrap();
    assert_eq!(pt.rows.len(), 3);
    let md = pt.to_markdown();
    assert!(md.contains("| llm-prefix | 10 |"), "{md}");
    assert!(md.contains("| 1.050 | yes |"), "{md}");
    assert!(md.contains("| 1.200 | no |"), "{md}");
    let no_base = perplexity_table(&[("llm-gate".to_string(), ppl(12.0))]).unwrap();
    assert_eq!(no_base.notes.len(), 1);

    // Dialogue tables from crafted episodes: the agent is clearly better on return.
    let eval = |agent: &str, rets: &[f64]| DialogueEval {
        agent: agent.to_string(),
        seeds: (0..rets.len() as u64).collect(),
        episodes: rets.iter().map(|&r| episode(r, 1.0, 0.5)).collect(),
    };
    let evals = [
        eval("llm-base", &[-0.3, -0.2, -0.25, -0.35]),
        eval("llm-static-prefix", &[-0.1, 0.0, -0.05, -0.1]),
        eval("llm-full", &[0.3, 0.4, 0.35, 0.45]),
    ];
    let cmp = compare_dialogue(&evals).unwrap();
    assert_eq!(cmp.len(), 12);
    let full_vs_base: Vec<_> = cmp
        .iter()
        .filter(|c| c.agent == "llm-full" && c.baseline == "llm-base")
        .collect();
    assert_eq!(full_vs_base.len(), 3);
    assert!(full_vs_base[0].better(), "{:?}", full_vs_base[0]);
    // Safety and helpfulness are equal everywhere: not better, p = 1.
    assert!(!full_vs_base[1].better() && full_vs_base[1].comparison.welch_p == 1.0);
    let dt = dialogue_comparison_table(&cmp).unwrap();
    assert_eq!(dt.rows.len(), 12);
    assert!(dt
        .to_markdown()
        .contains("| llm-full | llm-base | return | -0.2750 | 0.3750 | 0.6500 |"));
    assert_eq!(dialogue_summary_table(&evals).unwrap().rows.len(), 3);

    // Targets: llm-full meets all three; llm-gate misses fluency and markers.
    let markers = vec![
        ("llm-base".to_string(), effects(0.0)),
        ("llm-full".to_string(), effects(3.0)),
        ("llm-gate".to_string(), effects(0.0)),
    ];
    let ppls = vec![
        ("llm-base".to_string(), ppl(10.0)),
        ("llm-full".to_string(), ppl(10.9)),
        ("llm-gate".to_string(), ppl(12.0)),
    ];
    let tt = targets_table(&markers, &cmp, &ppls).unwrap();
    assert_eq!(tt.rows.len(), 2, "{}", tt.to_markdown());
    let md = tt.to_markdown();
    assert!(md.contains("| llm-full | 4/4 |"), "{md}");
    assert!(md.contains("| 1.090 | yes |"), "{md}");
    assert!(md.contains("| llm-gate | 0/4 |  |  | 1.200 | no |"), "{md}");
}

#[test]
fn generate_under_rejects_empty_requests_and_pairs_rows() {
    let mut a = agent(AgentKind::Steer, 6);
    assert!(generate_under(&mut a, EmotionCondition::Fear, &[], 2, 0, 6).is_err());
    assert!(generate_under(&mut a, EmotionCondition::Fear, &EVAL_PROMPTS[..1], 0, 0, 6).is_err());
    assert!(marker_effect(&mut a, &EVAL_PROMPTS[..1], 1, 0, 6).is_err());
    // llm-steer starts with zero scales: every condition gives the same tokens.
    let x = generate_under(
        &mut a,
        EmotionCondition::Neutral,
        &EVAL_PROMPTS[..2],
        2,
        9,
        6,
    )
    .unwrap();
    let y = generate_under(&mut a, EmotionCondition::Anger, &EVAL_PROMPTS[..2], 2, 9, 6).unwrap();
    assert_eq!(x.len(), 4);
    let t = |g: &[emorl_lm::Generation]| g.iter().map(|g| g.tokens.clone()).collect::<Vec<_>>();
    assert_eq!(t(&x), t(&y));
}
