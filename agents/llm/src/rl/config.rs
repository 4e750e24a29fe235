//! What RL training is told ([`RlConfig`]) and what it reports
//! ([`UpdateStats`], [`PhaseSeconds`]).

use std::collections::BTreeMap;

use emorl_envs_text::DialogueConfig;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::modules::MODULE_NAMES;
use crate::params::invalid;

/// Hyperparameters of RL training (every field defaulted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Dialogue states per update.
    pub prompts_per_update: usize,
    /// Responses sampled per state (k ≥ 2 for the leave-one-out baseline).
    pub samples_per_prompt: usize,
    pub max_new_tokens: usize,
    /// Sampling temperature (> 0); log-probabilities are of `logits / temperature`.
    pub temperature: f64,
    /// Learning rate of the one optimiser (every objective's gradients
    /// are summed and applied by one AdamW step).
    pub lr: f64,
    /// Multipliers of `lr` by module (`encoder`, `prefix`, `gate`, `erm`,
    /// `steering`) or by part of a module (`erm.logit`, `erm.heads`, …; the
    /// part wins): every part of every module is a parameter group of the
    /// one optimiser. Missing: 1; 0 freezes.
    pub lr_scale: BTreeMap<String, f64>,
    pub weight_decay: f64,
    /// Weight of the per-token KL(π ‖ π_frozen) penalty.
    pub kl_coef: f64,
    /// PPO ratio clip ε (`None`: plain REINFORCE ratio).
    pub clip: Option<f64>,
    /// Gradient steps per batch of samples (> 1 only makes sense with `clip`).
    pub epochs: usize,
    /// Weight of the entropy bonus.
    pub entropy_coef: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// Number of updates `train` runs.
    pub updates: usize,
    pub seed: u64,
    /// Prompts are at turns 0..=max_turn (earlier turns by a scripted policy).
    pub max_turn: usize,
    /// Divide each prompt's leave-one-out advantages by the standard
    /// deviation of its k rewards plus `advantage_eps` (group-normalised, as
    /// GRPO does): every prompt then weighs about the same whatever its
    /// reward spread. Off by default: on stories260K it learned less than
    /// plain leave-one-out advantages (docs/llm-design-notes.md, "Group-normalised advantages").
    pub normalize_advantages: bool,
    /// Added to the group's reward SD before dividing: near-ties would
    /// otherwise get huge advantages from differences that are noise.
    pub advantage_eps: f64,
    /// Sequences per backward pass (bounds memory).
    pub microbatch: usize,
    /// Sampling runs as this many generation batches of prompts of similar
    /// length (sorted by length, split into equal counts), so that short
    /// prompts are not padded to the longest one (prefill and KV cache
    /// scale with the padded length). 1: one batch of every prompt.
    pub sampling_groups: usize,
    /// Prefill each prompt once while sampling and copy its KV cache to its
    /// `k` rows ([`emorl_lm::Model::set_share_repeated_prompts`]); only
    /// when no module acts on the prompt's hidden states (`llm-erm`,
    /// `llm-steer`, `llm-reft`: they act on the response only). On by
    /// default: the prefill is most of the sampling time, and its effect
    /// is measured and small — the smaller prefill batch rounds log-probs
    /// differently in the last bits and, rarely, changes a sampled token
    /// (SmolLM2, 8 prompts × 4 samples × 32 tokens, `examples/prefill_sharing.rs`:
    /// 95 of 96 sequences identical over 3 seeds, log-probs within 1.6e-5
    /// before a difference, sampling 1.1–1.8× faster on a busy machine).
    pub share_prompt_prefill: bool,
    /// Sample with the frozen model's weights kept in the file's own
    /// quantization (SmolLM2's Q4_1 file: int4 blocks and an int8 output
    /// layer, kept bit for bit; activations rounded to 8 bits per block of
    /// 32, as llama.cpp does; float files stay dense): the trainer packs
    /// them once, sampling reads them, and every learning pass and every
    /// generation outside sampling (evaluation) keeps the dense weights.
    /// On by default: sampling is most of an update and the packed decode
    /// is ≈ 5× faster (docs/language-models.md). What the learning pass
    /// reads from sampling (an ERM's recorded logits) comes from the same
    /// packed pass; modules that recompute log-probabilities do so densely,
    /// a difference of ≈ 1% relative L2 in the logits. `false`: dense.
    pub packed_sampling: bool,
    /// Weight of the expression objective (0: off). Each sampled sequence
    /// of an update is also scored under a forced emotional state (fear,
    /// curiosity, anger, joy in turn, as the marker metric forces them): at
    /// every response position the policy's probability mass on that
    /// emotion's single-token expression words (the expression half of its
    /// lexicon only) is pushed up towards `expression_target` (loss
    /// `max(0, log target − log mass)`), which ties the modules' emotional
    /// input to emotional expression. Its gradients join the RL step's in
    /// the same optimiser step. The environment's reward is untouched.
    pub expression_coef: f64,
    /// Marker-token probability mass per position at which the expression
    /// objective stops pushing (in (0, 1)).
    pub expression_target: f64,
    /// Weight of KL(π_forced ‖ π_frozen) per position in the expression
    /// objective: expression without losing the frozen model's fluency.
    pub expression_kl: f64,
    /// Weight of an unlikelihood term on the expression objective's words
    /// a response already wrote: −log(1 − p(any of them)) per position.
    /// Without it the objective is met by repeating one word ("fun fun
    /// fun …"), which the held-out lexicon half exposes.
    pub expression_repeat_coef: f64,
    /// Let the RL objective's gradients reach the emotional appraisal (the
    /// encoder and the ERM's text reading, GRU and heads). Off by default:
    /// the emotion is an input the modules learn to use, and its meaning
    /// comes from supervision and the ERM's feedback objective alone — RL
    /// cannot redefine an emotion to whatever pays (on stories260K, RL
    /// through the appraisal drove the ERM's heads to saturation and left
    /// the return where it was; see docs/llm-design-notes.md).
    pub rl_through_appraisal: bool,
    /// Weight of the ERM's online feedback objective (seed 001's phase 3;
    /// 0: off): the ERM's appraisal of each prompt is pulled towards the
    /// emotional targets ([`crate::modules::erm::erm_targets`]) of the
    /// context that the sampled responses led to, averaged over its `k`
    /// responses — it learns what its situation turns into.
    pub feedback_coef: f64,
    /// The dialogue environment.
    pub env: DialogueConfig,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            prompts_per_update: 8,
            samples_per_prompt: 4,
            max_new_tokens: 32,
            temperature: 1.0,
            lr: 1e-3,
            lr_scale: BTreeMap::new(),
            weight_decay: 0.0,
            kl_coef: 0.05,
            clip: None,
            epochs: 1,
            entropy_coef: 0.0,
            grad_clip: 1.0,
            updates: 100,
            seed: 0,
            max_turn: 0,
            normalize_advantages: false,
            advantage_eps: 0.1,
            microbatch: 8,
            sampling_groups: 1,
            share_prompt_prefill: true,
            packed_sampling: true,
            expression_coef: 0.0,
            expression_target: 0.03,
            expression_kl: 1.0,
            expression_repeat_coef: 0.0,
            rl_through_appraisal: false,
            feedback_coef: 0.0,
            env: DialogueConfig::default(),
        }
    }
}

impl RlConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(invalid(format!("rl: {m}")));
        if self.prompts_per_update == 0 {
            return bad("prompts_per_update must be > 0");
        }
        if self.samples_per_prompt < 2 {
            return bad("samples_per_prompt must be >= 2 (leave-one-out baseline)");
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be > 0");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be > 0");
        }
        let nonneg = |x: f64| x >= 0.0 && x.is_finite();
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr must be > 0");
        }
        if ![
            self.weight_decay,
            self.kl_coef,
            self.entropy_coef,
            self.grad_clip,
        ]
        .into_iter()
        .all(nonneg)
        {
            return bad("weight_decay, kl_coef, entropy_coef and grad_clip must be >= 0");
        }
        if let Some(c) = self.clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad("clip must be > 0");
            }
        }
        if !(self.advantage_eps > 0.0 && self.advantage_eps.is_finite()) {
            return bad("advantage_eps must be finite and > 0");
        }
        if !nonneg(self.expression_coef)
            || !nonneg(self.expression_kl)
            || !nonneg(self.expression_repeat_coef)
        {
            return bad("expression_coef, expression_kl and expression_repeat_coef must be >= 0");
        }
        if !nonneg(self.feedback_coef) {
            return bad("feedback_coef must be >= 0");
        }
        for (key, scale) in &self.lr_scale {
            let module = key.split('.').next().unwrap_or(key);
            if !MODULE_NAMES.contains(&module) {
                return bad(&format!(
                    "lr_scale: unknown module `{module}` (known: {})",
                    MODULE_NAMES.join(", ")
                ));
            }
            if !nonneg(*scale) {
                return bad(&format!("lr_scale.{key} must be finite and >= 0"));
            }
        }
        if !(self.expression_target > 0.0 && self.expression_target < 1.0) {
            return bad("expression_target must be in (0, 1)");
        }
        if self.epochs == 0 || self.microbatch == 0 || self.sampling_groups == 0 {
            return bad("epochs, microbatch and sampling_groups must be > 0");
        }
        self.env.validate()?;
        Ok(())
    }
}

/// What one update measured (what a logger writes to TensorBoard).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// 1-based update number.
    pub update: usize,
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Mean per-token KL(π ‖ π_frozen).
    pub kl: f64,
    /// Mean per-token entropy of π.
    pub entropy: f64,
    pub loss: f64,
    pub policy_loss: f64,
    /// Gradient norm before clipping (last epoch).
    pub grad_norm: f64,
    /// Mean generated tokens per response.
    pub response_tokens: f64,
    /// Batch-mean emotions by name (the source's columns, the neurochemical
    /// levels with `emotion_source = "neuro"`, then `erm_*`).
    pub emotion_means: Vec<(String, f64)>,
    /// Mean probability mass on the forced emotion's marker tokens per
    /// response position, before the step (0 when the expression objective
    /// is off).
    #[serde(default)]
    pub expression_mass: f64,
    /// Each objective's weighted loss, by name (`policy`, `expression`,
    /// `feedback`).
    #[serde(default)]
    pub objectives: Vec<(String, f64)>,
    pub seconds: f64,
}

/// Wall time of the phases of the last update, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseSeconds {
    /// Dialogue states, prompt encoding and the ERM's prompt read-out.
    pub prompts: f64,
    /// Sampling the responses.
    pub sampling: f64,
    /// Environment rewards and advantages.
    pub rewards: f64,
    /// Log-probabilities, loss, backward pass and optimiser step.
    pub learning: f64,
}
