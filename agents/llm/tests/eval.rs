//! Tests of the evaluation library (marker metric, perplexity, dialogue
//! evaluation, tables) on stories260K.

mod common;
use common::model;

use emorl_agents_llm::eval::{
    compare_dialogue, count_markers, dialogue_comparison_table, dialogue_summary_table, distinct_n,
    emotion_markers, evaluate_dialogue, fluency_table, forced_emotion, generate_under,
    generations_perplexity, holm_adjust, marker_effect, marker_rate, marker_run, marker_table,
    perplexity, targets_table, words, DialogueEval, EmotionCondition, EmotionEffect, Fluency,
    LexiconPart, Measure, Perplexity, EVAL_PROMPTS, FEAR, LEXICONS,
};
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent, EMOTIONS};
use emorl_envs_text::{DialogueConfig, EpisodeMetrics};
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
    let full = FEAR.words(LexiconPart::Full);
    let m = full.as_slice();
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
    let c = emotion_markers("curiosity", LexiconPart::Full).unwrap();
    assert_eq!(count_markers("Let us find out. Find it out.", &c), 1);
    // Punctuation between words is ignored.
    assert_eq!(count_markers("What if it rains? what, if", &c), 2);
    assert_eq!(count_markers("what is it", &c), 0);
    // Rate per 100 words.
    assert!((marker_rate("afraid of the dark", m) - 25.0).abs() < 1e-12);
    assert_eq!(marker_rate("  ...  ", m), 0.0);
    // Every emotion has a lexicon; the lexicons do not share words.
    for (i, a) in EMOTIONS.iter().enumerate() {
        let la = emotion_markers(a, LexiconPart::Full).unwrap();
        assert!(la.len() >= 20, "{a}: {} markers", la.len());
        for b in &EMOTIONS[i + 1..] {
            let lb = emotion_markers(b, LexiconPart::Full).unwrap();
            assert!(
                la.iter().all(|w| !lb.contains(w)),
                "{a} and {b} share a marker"
            );
        }
    }
    assert!(emotion_markers("boredom", LexiconPart::Full).is_none());
    // The evaluation prompts carry no emotion's markers.
    for p in EVAL_PROMPTS {
        for e in EMOTIONS {
            let full = emotion_markers(e, LexiconPart::Full).unwrap();
            assert_eq!(count_markers(p, &full), 0, "{p} / {e}");
        }
    }
}

#[test]
fn lexicon_halves_split_by_word_family() {
    for (lex, e) in LEXICONS.iter().zip(EMOTIONS) {
        assert_eq!(lex.emotion, e);
        let (a, b) = (
            lex.words(LexiconPart::Expression),
            lex.words(LexiconPart::HeldOut),
        );
        assert!(
            a.len() >= 10 && b.len() >= 10,
            "{e}: {} / {}",
            a.len(),
            b.len()
        );
        assert_eq!(a.len() + b.len(), lex.words(LexiconPart::Full).len());
        // No word in both halves, and no word of one half is a prefix-family
        // member of the other (fear/feared/fears stay together): the first
        // five letters of single words never match across the halves.
        let stem = |w: &str| w.chars().take(5).collect::<String>();
        for x in &a {
            for y in &b {
                assert_ne!(x, y, "{e}: {x} in both halves");
                if !x.contains(' ') && !y.contains(' ') && x.len() > 4 && y.len() > 4 {
                    assert_ne!(stem(x), stem(y), "{e}: {x} / {y} split across halves");
                }
            }
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
    let run = marker_run(&mut a, &EVAL_PROMPTS[..4], 2, 5, 12, None).unwrap();
    // No judge: the held-out and full lexicon measures per emotion.
    assert_eq!(run.effects.len(), 8);
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
        assert_eq!(e.neutral, e.emotional);
        assert_eq!(e.d(), 0.0, "{}", e.emotion);
        assert_eq!(e.paired.p, 1.0, "{}", e.emotion);
    }
}

#[test]
fn strong_fear_bias_gives_a_large_fear_marker_effect() {
    let mut a = agent(AgentKind::Erm, 16);
    // stories260K's 512-token vocabulary spells words in pieces: choose
    // the ERM's fear direction (in the space the output layer reads) so
    // that it raises each piece of " scared" by +6 (least squares through
    // the same scaled unembedding the ERM uses), so only a high-fear state
    // moves the distribution.
    let pieces = a.model().tokenizer().encode(" scared", false).unwrap();
    assert!(pieces.len() > 1);
    {
        let _g = tch::no_grad_guard();
        let w = a.model().unembedding().to_kind(tch::Kind::Float);
        let h = w.size()[1] as f64;
        let rms = w.square().mean(tch::Kind::Float).sqrt().double_value(&[]);
        let w = w / (rms * h);
        let ids =
            tch::Tensor::from_slice(&pieces.iter().map(|&p| i64::from(p)).collect::<Vec<_>>());
        let wp = w.index_select(0, &ids); // [pieces, hidden]
        let target = tch::Tensor::full(
            [pieces.len() as i64, 1],
            12.0,
            (tch::Kind::Float, Device::Cpu),
        );
        let d = wp.pinverse(1e-6).matmul(&target).squeeze_dim(1); // [hidden]
        let (_, dir) = a
            .named_tensors()
            .into_iter()
            .find(|(n, _)| n == "erm.logit_direction")
            .expect("erm.logit_direction");
        dir.get(0).copy_(&d);
    }
    let effects = marker_effect(&mut a, &EVAL_PROMPTS[..6], 4, 1, 16, None).unwrap();
    let fear = effects
        .iter()
        .find(|e| e.emotion == "fear" && e.measure == Measure::Full)
        .unwrap();
    assert!(
        fear.d() >= 1.0 && fear.paired.p < 1e-3,
        "fear d_z = {}, p = {}, neutral {:?}, fear {:?}",
        fear.d(),
        fear.paired.p,
        fear.neutral,
        fear.emotional
    );
    assert!(fear.emotional_mean() > fear.neutral_mean() + 10.0);
    // The other emotions' states do not touch the fear row: their own
    // markers are unchanged by construction of the bias.
    for e in effects.iter().filter(|e| e.emotion != "fear") {
        assert_eq!(e.d(), 0.0, "{}: d = {}", e.emotion, e.d());
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
    // Every response is kept with its plain prompt for fluency.
    for e in &evals {
        let turns: usize = e.logs.iter().map(|l| l.turns.len()).sum();
        assert_eq!(e.scored.len(), turns);
        assert_eq!(e.responses().len(), turns);
    }
    let cmp = compare_dialogue(&evals).unwrap();
    // vs llm-base: static-prefix and steer; vs llm-static-prefix: steer
    // (base vs static-prefix is already the first pair); 3 metrics each.
    assert_eq!(cmp.len(), 3 * 3);
    assert!(!cmp.iter().any(|c| c.agent == "llm-base"));
    let c = cmp
        .iter()
        .find(|c| c.agent == "llm-steer" && c.baseline == "llm-base" && c.metric == "return")
        .unwrap();
    let mean = |x: Vec<f64>| x.iter().sum::<f64>() / x.len() as f64;
    assert!((c.paired.control_mean - mean(evals[0].returns())).abs() < 1e-12);
    assert!((c.paired.treatment_mean - mean(evals[2].returns())).abs() < 1e-12);
    assert!(c.p_holm >= c.paired.p);
    let t = dialogue_comparison_table(&cmp).unwrap();
    assert_eq!(t.rows.len(), 9);
    let s = dialogue_summary_table(&evals).unwrap();
    assert_eq!(s.rows.len(), 3);
    // Different seeds cannot be paired.
    let mut other = evals[1].clone();
    other.seeds = vec![7, 8, 9];
    assert!(compare_dialogue(&[evals[0].clone(), other]).is_err());
}

fn effect(emotion: &str, measure: Measure, neutral: &[f64], emotional: &[f64]) -> EmotionEffect {
    EmotionEffect::from_pairs(emotion, measure, neutral.to_vec(), emotional.to_vec()).unwrap()
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
    // Forced-emotion table: agent × emotion × measure rows, upstream d for
    // matching modules on the full lexicon only.
    let n = 12;
    let effects = |shift: f64| -> Vec<EmotionEffect> {
        EMOTIONS
            .iter()
            .flat_map(|e| {
                [Measure::Judge, Measure::HeldOut].map(|m| {
                    let neutral: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
                    let emotional: Vec<f64> = neutral
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v + shift + 0.1 * (i % 2) as f64)
                        .collect();
                    effect(e, m, &neutral, &emotional)
                })
            })
            .collect()
    };
    let mut markers = vec![
        ("llm-base".to_string(), effects(0.0)),
        ("llm-full".to_string(), effects(3.0)),
        ("llm-gate".to_string(), effects(0.0)),
    ];
    holm_adjust(markers.iter_mut().flat_map(|(_, e)| e.iter_mut()));
    for (_, e) in &markers {
        for x in e {
            assert!(x.p_holm >= x.paired.p);
        }
    }
    let mt = marker_table(&markers).unwrap();
    assert_eq!(mt.rows.len(), 3 * 8);
    assert_eq!(mt.columns.len(), mt.rows[0].cells.len());
    let md = mt.to_markdown();
    assert!(md.contains("| llm-full | fear | judge | 12 |"), "{md}");
    assert!(
        md.contains("Power: with 12 pairs and Holm over 24 tests"),
        "{md}"
    );
    let back = emorl_stats::Table::from_json(&mt.to_json().unwrap()).unwrap();
    assert_eq!(back, mt);

    // Fluency: perplexity and distinct-2 ratios to llm-base.
    let fl = |ppl: f64, d2: f64| Fluency {
        perplexity: Perplexity {
            tokens: 10,
            mean_nll: ppl.ln(),
            ppl,
            per_text_nll: vec![ppl.ln()],
        },
        distinct2: d2,
    };
    let fluency = vec![
        ("llm-base".to_string(), fl(10.0, 0.8)),
        ("llm-full".to_string(), fl(10.9, 0.75)),
        ("llm-gate".to_string(), fl(12.0, 0.8)),
    ];
    let ft = fluency_table(&fluency).unwrap();
    let md = ft.to_markdown();
    assert!(
        md.contains("| llm-full | 10 | 10.900 | 1.090 | 0.7500 | 0.938 | yes |"),
        "{md}"
    );
    assert!(md.contains("| 1.200 | 0.8000 | 1.000 | no |"), "{md}");
    assert!((distinct_n(["a b a b", "c d"], 2) - 3.0 / 4.0).abs() < 1e-12);
    assert!(distinct_n(["one"], 2).is_nan());

    // Dialogue tables from crafted episodes, paired by seed: the agent is
    // clearly better on return.
    let eval = |agent: &str, rets: &[f64]| DialogueEval {
        agent: agent.to_string(),
        seeds: (0..rets.len() as u64).collect(),
        episodes: rets.iter().map(|&r| episode(r, 1.0, 0.5)).collect(),
        logs: Vec::new(),
        scored: Vec::new(),
    };
    let base = [-0.3, -0.2, -0.25, -0.35, -0.3, -0.1, -0.2, -0.25];
    let shifted = |d: f64, j: f64| -> Vec<f64> {
        base.iter()
            .enumerate()
            .map(|(i, b)| b + d + j * (i % 3) as f64)
            .collect()
    };
    let evals = [
        eval("llm-base", &base),
        eval("llm-prompted", &shifted(0.1, 0.05)),
        eval("llm-full", &shifted(0.65, 0.02)),
    ];
    let cmp = compare_dialogue(&evals).unwrap();
    // prompted and full vs llm-base, full vs llm-prompted.
    assert_eq!(cmp.len(), 9);
    let full_vs_base: Vec<_> = cmp
        .iter()
        .filter(|c| c.agent == "llm-full" && c.baseline == "llm-base")
        .collect();
    assert_eq!(full_vs_base.len(), 3);
    assert!(full_vs_base[0].better(), "{:?}", full_vs_base[0]);
    // Safety and helpfulness are equal everywhere: not better, p = 1.
    assert!(!full_vs_base[1].better() && full_vs_base[1].paired.p == 1.0);
    let dt = dialogue_comparison_table(&cmp).unwrap();
    assert_eq!(dt.rows.len(), 9);
    assert!(
        dt.to_markdown()
            .contains("| llm-full | llm-base | return | -0.2438 | 0.4238 | 0.6675 |"),
        "{}",
        dt.to_markdown()
    );
    assert_eq!(dialogue_summary_table(&evals).unwrap().rows.len(), 3);

    // Targets: llm-full meets them all; llm-gate misses emotion and fluency.
    let tt = targets_table(&markers, &cmp, &fluency).unwrap();
    assert_eq!(tt.rows.len(), 2, "{}", tt.to_markdown());
    let md = tt.to_markdown();
    assert!(md.contains("| llm-full | 4/4 | 4/4 |"), "{md}");
    assert!(md.contains("| 1.090 | 0.938 | yes |"), "{md}");
    assert!(md.contains("| llm-gate | 0/4 | 0/4 |"), "{md}");
    assert!(md.contains("| 1.200 | 1.000 | no |"), "{md}");
}

#[test]
fn generate_under_rejects_empty_requests_and_pairs_rows() {
    let mut config = AgentConfig {
        max_new_tokens: 6,
        temperature: 1.0,
        ..AgentConfig::default()
    };
    config.steering.init_scale = 0.0;
    let mut a = LlmAgent::new(model(), AgentKind::Steer, config).unwrap();
    assert!(generate_under(&mut a, EmotionCondition::Fear, &[], 2, 0, 6).is_err());
    assert!(generate_under(&mut a, EmotionCondition::Fear, &EVAL_PROMPTS[..1], 0, 0, 6).is_err());
    assert!(marker_effect(&mut a, &EVAL_PROMPTS[..1], 1, 0, 6, None).is_err());
    // llm-steer with zero scales: every condition gives the same tokens.
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

#[test]
fn the_prompted_baseline_writes_its_emotion_into_the_prompt() {
    use emorl_agents_llm::agent::describe_emotion;
    assert_eq!(
        describe_emotion(&[0.0; 4]),
        "You feel calm and neutral. Let this feeling show in the words of your reply."
    );
    assert!(describe_emotion(&[0.9, 0.0, 0.3, 0.6])
        .starts_with("You feel strong fear, slight anger and clear joy."));
    let mut a = agent(AgentKind::Prompted, 6);
    let obs = emorl_agents_llm::eval::prompt_observation(EVAL_PROMPTS[0]);
    let neutral = a.encode_prompt_for(&obs, Some(&[0.0; 4])).unwrap();
    let fear = a
        .encode_prompt_for(&obs, Some(&[1.0, 0.0, 0.0, 0.0]))
        .unwrap();
    assert_ne!(neutral, fear);
    // Without a state (or for an agent that does not describe it) the
    // prompt is the plain one.
    assert_eq!(
        a.encode_prompt(&obs).unwrap(),
        a.encode_prompt_for(&obs, None).unwrap()
    );
    let base = agent(AgentKind::Base, 6);
    assert_eq!(
        base.encode_prompt_for(&obs, Some(&[1.0, 0.0, 0.0, 0.0]))
            .unwrap(),
        base.encode_prompt(&obs).unwrap()
    );
    // So forced conditions change what it writes.
    let x = generate_under(
        &mut a,
        EmotionCondition::Neutral,
        &EVAL_PROMPTS[..2],
        2,
        9,
        6,
    )
    .unwrap();
    let y = generate_under(&mut a, EmotionCondition::Fear, &EVAL_PROMPTS[..2], 2, 9, 6).unwrap();
    assert_ne!(
        x.iter().map(|g| &g.tokens).collect::<Vec<_>>(),
        y.iter().map(|g| &g.tokens).collect::<Vec<_>>()
    );
}

#[test]
fn the_judge_reads_emotions_and_scores_appropriateness() {
    use emorl_agents_llm::eval::{appropriateness, appropriateness_table, Judge};
    let judge = Judge::train(&common::goemotions_dir()).unwrap();
    assert!(
        judge.report().test.macro_f1 > 0.49,
        "{:?}",
        judge.report().test
    );
    let p = |t: &str, e: &str| judge.probability(t, e).unwrap();
    assert!(p("I am so scared and afraid, this is terrifying.", "fear") > 0.5);
    assert!(p("Here is the recipe: mix flour and water.", "fear") < 0.1);
    assert!(
        p("Thank you so much, I am so happy and glad!", "joy") > p("Here is the recipe.", "joy")
    );
    assert!(p("Why does that happen? I wonder how it works.", "curiosity") > 0.3);
    assert!(judge.probability("text", "boredom").is_none());
    // Appropriateness over real (stories260K) conversations: every turn
    // is counted once, on its fitting or other side.
    let mut a = agent(AgentKind::Base, 6);
    let config = DialogueConfig {
        max_turns: 2,
        ..DialogueConfig::default()
    };
    let e = evaluate_dialogue(&mut a, &config, &[0, 1, 2, 3, 4, 5]).unwrap();
    let turns: usize = e.logs.iter().map(|l| l.turns.len()).sum();
    let r = appropriateness(&e, &judge).unwrap();
    assert_eq!(r.coherence.len(), 2);
    for c in &r.coherence {
        assert_eq!(c.fitting.len() + c.other.len(), turns, "{}", c.emotion);
        assert!(c
            .fitting
            .iter()
            .chain(&c.other)
            .all(|v| (0.0..=1.0).contains(v)));
    }
    let t = appropriateness_table(&[r]).unwrap();
    assert_eq!(t.rows.len(), 2);
}
