//! The emotional reward model (ERM): an appraisal of the conversation read
//! from the frozen model's hidden states (a read-out layer, a small
//! encoder, attention pooling), six emotion heads, and a tonic GRU cell
//! carried across turns. Its output drives the [`LogitModulator`]
//! (per-emotion vocabulary biases plus cautious/exploratory token sets) and
//! the [`TemperatureModulator`].

use emorl_core::EmotionalContext;
use emorl_lm::{Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{lm_err, Result};
use crate::modules::emotion::{N_CONDITIONING, N_EMOTIONS};
use crate::params::{invalid, Linear, ParamStore};

/// The ERM's heads, in tensor column order.
pub const ERM_EMOTIONS: [&str; 6] = ["fear", "curiosity", "anger", "joy", "anxiety", "confidence"];
/// Number of ERM heads.
pub const N_ERM: usize = ERM_EMOTIONS.len();

/// Words whose tokens the cautious set holds (boosted with fear and anxiety).
pub const CAUTIOUS_WORDS: [&str; 14] = [
    "careful", "safe", "safety", "sorry", "cannot", "can't", "instead", "please", "warning",
    "danger", "risk", "trust", "help", "avoid",
];
/// Words whose tokens the exploratory set holds (boosted with curiosity and confidence).
pub const EXPLORATORY_WORDS: [&str; 13] = [
    "why",
    "how",
    "what",
    "wonder",
    "explore",
    "curious",
    "interesting",
    "more",
    "discover",
    "maybe",
    "because",
    "example",
    "?",
];

/// Configuration of the ERM and its modulators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErmConfig {
    /// Read-out index (0 = embeddings, i = after block i−1); `None`: two
    /// thirds of the depth.
    pub readout: Option<usize>,
    /// Width of the hidden-state encoder and of the tonic GRU.
    pub width: usize,
    /// Base sampling temperature of the temperature modulator.
    pub base_temperature: f64,
    /// Temperature clamp.
    pub min_temperature: f64,
    pub max_temperature: f64,
    /// Learning rate of the supervised (phase 1) and feedback (phase 3) steps.
    pub lr: f64,
}

impl Default for ErmConfig {
    fn default() -> Self {
        ErmConfig {
            readout: None,
            width: 32,
            base_temperature: 1.0,
            min_temperature: 0.5,
            max_temperature: 2.0,
            lr: 1e-3,
        }
    }
}

/// Supervision targets of the six heads from an emotional context: fear from
/// threat, harm and unsafe requests; curiosity from topic novelty; anger from
/// failures, repeats and contradictions; joy from positive reward and
/// satisfaction; anxiety from accumulated negative reward; confidence from
/// satisfaction without failures.
pub fn erm_targets(c: &EmotionalContext) -> [f32; N_ERM] {
    let s = c.social.clone().unwrap_or_default();
    let threat = c.threat_distance.map_or(0.0, |d| 1.0 / (1.0 + d.max(0.0)));
    let b = |x: bool| f64::from(u8::from(x));
    let fear = threat
        .max(b(c.harmed))
        .max(b(c.near_threat))
        .max(b(s.safety_flag));
    let curiosity = s.topic_novelty.clamp(0.0, 1.0);
    let failed = (f64::from(s.failed_attempts) / 3.0).min(1.0);
    let anger = (failed + 0.5 * b(s.repeated_query) + 0.3 * b(s.contradiction_detected)).min(1.0);
    let joy = c
        .reward
        .max(s.last_reward)
        .clamp(0.0, 1.0)
        .max(s.user_satisfaction.clamp(0.0, 1.0));
    let anxiety =
        (s.cumulative_negative / (1.0 + s.cumulative_negative)).max(0.5 * b(s.safety_flag));
    let confidence = (s.user_satisfaction.clamp(0.0, 1.0) * (1.0 - failed)).max(0.0);
    [fear, curiosity, anger, joy, anxiety, confidence].map(|x| {
        if x.is_finite() {
            x.clamp(0.0, 1.0) as f32
        } else {
            0.0
        }
    })
}

/// What the ERM says about a batch of prompts.
#[derive(Debug)]
pub struct ErmOutput {
    /// `[batch, N_ERM]` in (0, 1), columns in [`ERM_EMOTIONS`] order.
    pub emotions: Tensor,
    /// `[batch, width]` tonic GRU state after this turn.
    pub tonic: Tensor,
    /// `[batch, width + N_CONDITIONING]` GRU input (pooled text + encoder state).
    pub input: Tensor,
}

/// The ERM's logit bias: a low-rank bias through the frozen unembedding
/// (each ERM emotion moves the final hidden state along a learned
/// direction, and the model's own output layer turns that into logits, so
/// words the model holds for similar move together), plus gains on the
/// cautious and exploratory word sets.
#[derive(Debug)]
pub struct LogitModulator {
    /// `[N_ERM, hidden]`, zero-initialised: the direction of each emotion in
    /// the space the output layer reads.
    direction: Tensor,
    /// The frozen model's output weight `[vocab, hidden]` as f32 (not
    /// saved), divided by its RMS and by `hidden`: an Adam step moves every
    /// entry of `direction` by about ε along the gradient's signs, which
    /// then moves the logit best aligned with them by about ε, whatever the
    /// model's width or weight scale (dividing by √hidden instead moved
    /// SmolLM2's logits 24× further per step: KL 2 nats per token in five
    /// updates).
    unembedding: Tensor,
    /// `[vocab]` 0/1 buffers.
    cautious: Tensor,
    exploratory: Tensor,
    /// `[2]`: gains of the cautious and exploratory sets, zero-initialised.
    gains: Tensor,
}

impl LogitModulator {
    /// The additive bias `[batch, vocab]` for an ERM emotion state `[batch, N_ERM]`.
    pub fn bias(&self, emotions: &Tensor) -> Result<Tensor, tch::TchError> {
        // [b, N_ERM] · [N_ERM, hidden] · [hidden, vocab]: rank ≤ N_ERM.
        let base = emotions
            .f_matmul(&self.direction)?
            .f_matmul(&self.unembedding.f_tr()?)?;
        let fearish = emotions
            .f_select(1, 0)?
            .f_add(&emotions.f_select(1, 4)?)?
            .f_mul_scalar(0.5)?
            .f_mul(&self.gains.f_select(0, 0)?)?
            .f_unsqueeze(1)?;
        let curious = emotions
            .f_select(1, 1)?
            .f_add(&emotions.f_select(1, 5)?)?
            .f_mul_scalar(0.5)?
            .f_mul(&self.gains.f_select(0, 1)?)?
            .f_unsqueeze(1)?;
        base.f_add(&fearish.f_mul(&self.cautious.f_unsqueeze(0)?)?)?
            .f_add(&curious.f_mul(&self.exploratory.f_unsqueeze(0)?)?)
    }

    /// The per-emotion directions `[N_ERM, hidden]` (a trainable tensor).
    pub fn direction(&self) -> &Tensor {
        &self.direction
    }

    /// Token ids in the cautious and exploratory sets.
    pub fn token_sets(&self) -> Result<(Vec<i64>, Vec<i64>)> {
        let ids = |m: &Tensor| -> Result<Vec<i64>> {
            Ok(Vec::<i64>::try_from(&m.f_nonzero()?.f_view([-1])?)?)
        };
        Ok((ids(&self.cautious)?, ids(&self.exploratory)?))
    }
}

/// `temperature = base · exp(w · emotion)`, clamped.
#[derive(Debug)]
pub struct TemperatureModulator {
    /// `[N_ERM]`, zero-initialised.
    weight: Tensor,
    base: f64,
    min: f64,
    max: f64,
}

impl TemperatureModulator {
    /// The per-emotion weights `[N_ERM]` (a trainable tensor).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `[batch]` temperatures.
    pub fn temperature(&self, emotions: &Tensor) -> Result<Tensor, tch::TchError> {
        emotions
            .f_matmul(&self.weight)?
            .f_exp()?
            .f_mul_scalar(self.base)?
            .f_clamp(self.min, self.max)
    }
}

/// The emotional reward model with its modulators.
#[derive(Debug)]
pub struct EmotionalRewardModel {
    pub(crate) params: ParamStore,
    readout: usize,
    encoder: Linear,
    attention: Linear,
    gru_ih: Linear,
    gru_hh: Linear,
    heads: Linear,
    pub logit_modulator: LogitModulator,
    pub temperature_modulator: TemperatureModulator,
    width: i64,
}

fn word_token_set(model: &Model, words: &[&str]) -> Result<Tensor> {
    let vocab = model.vocab_size();
    let mut mask = vec![0f32; vocab];
    for w in words {
        for text in [w.to_string(), format!(" {w}")] {
            let ids = model.tokenizer().encode(&text, false)?;
            // A word split into pieces contributes its first piece.
            if let Some(&first) = ids.first() {
                if (first as usize) < vocab {
                    mask[first as usize] = 1.0;
                }
            }
        }
    }
    Ok(Tensor::f_from_slice(&mask)?.f_to_device(model.device())?)
}

impl EmotionalRewardModel {
    pub fn new(model: &Model, config: &ErmConfig, seed: u64) -> Result<Self> {
        let n = model.n_layers();
        let readout = config.readout.unwrap_or((2 * n).div_ceil(3));
        if readout > n {
            return Err(invalid(format!(
                "erm: read-out {readout} is past the model's {n} layers (0..={n})"
            )));
        }
        if config.width == 0 {
            return Err(invalid("erm: width must be > 0"));
        }
        if !(config.min_temperature > 0.0
            && config.min_temperature <= config.base_temperature
            && config.base_temperature <= config.max_temperature)
        {
            return Err(invalid(
                "erm: temperatures must satisfy 0 < min_temperature <= base_temperature <= max_temperature",
            ));
        }
        let h = model.hidden_size() as i64;
        let w = config.width as i64;
        let mut params = ParamStore::new(seed, "erm", model.device());
        let encoder = params.linear("encoder", h, w)?;
        let attention = params.linear("attention", w, 1)?;
        let gru_ih = params.linear("gru.ih", w + N_CONDITIONING as i64, 3 * w)?;
        let gru_hh = params.linear("gru.hh", w, 3 * w)?;
        let heads = params.linear("heads", 2 * w, N_ERM as i64)?;
        let logit_modulator = LogitModulator {
            direction: params.constant("logit.direction", &[N_ERM as i64, h], 0.0)?,
            unembedding: {
                let _g = tch::no_grad_guard();
                let w = model.unembedding().f_to_kind(Kind::Float)?.f_detach()?;
                let rms = w
                    .f_square()?
                    .f_mean(Kind::Float)?
                    .f_sqrt()?
                    .f_double_value(&[])?;
                w.f_div_scalar(rms.max(1e-12) * h as f64)?
            },
            cautious: params.buffer("logit.cautious", &word_token_set(model, &CAUTIOUS_WORDS)?)?,
            exploratory: params.buffer(
                "logit.exploratory",
                &word_token_set(model, &EXPLORATORY_WORDS)?,
            )?,
            gains: params.constant("logit.gains", &[2], 0.0)?,
        };
        let temperature_modulator = TemperatureModulator {
            weight: params.constant("temperature.weight", &[N_ERM as i64], 0.0)?,
            base: config.base_temperature,
            min: config.min_temperature,
            max: config.max_temperature,
        };
        Ok(EmotionalRewardModel {
            params,
            readout,
            encoder,
            attention,
            gru_ih,
            gru_hh,
            heads,
            logit_modulator,
            temperature_modulator,
            width: w,
        })
    }

    /// The read-out index the ERM reads.
    pub fn readout(&self) -> usize {
        self.readout
    }

    /// Width of the tonic state.
    pub fn width(&self) -> i64 {
        self.width
    }

    /// Read-out hidden states `[batch, seq, hidden]` of left-padded `tokens`
    /// from the frozen model without hooks and without gradients.
    pub fn read_hidden(&self, model: &mut Model, tokens: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        let hooks = Hooks::new().with_readout(self.readout);
        // Blocks past the read-out and the output layer are not needed.
        match model
            .read_out(tokens, Some(mask), &hooks)?
            .into_iter()
            .next()
        {
            Some((_, h)) => Ok(h.f_to_kind(Kind::Float)?),
            None => Err(invalid("erm: the model returned no read-out")),
        }
    }

    /// Attention-pooled text features `[batch, width]` of hidden states
    /// `[batch, seq, hidden]`, over positions where `mask` (`[batch, seq]`) is nonzero.
    pub fn pool(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        // Each position scaled to unit RMS: residual streams of real models
        // have norms in the tens (and outliers at the first position) that
        // would saturate the tanh encoder.
        let rms = hidden
            .f_square()?
            .f_mean_dim([-1i64].as_slice(), true, Kind::Float)?
            .f_add_scalar(1e-6)?
            .f_sqrt()?;
        let z = self.encoder.forward(&hidden.f_div(&rms)?)?.f_tanh()?; // [b, s, w]
        let scores = self.attention.forward(&z)?.f_squeeze_dim(-1)?; // [b, s]
        let keep = mask.f_ne(0)?;
        let scores = scores.f_masked_fill(&keep.f_logical_not()?, -1e9)?;
        let a = scores.f_softmax(-1, Kind::Float)?.f_unsqueeze(-1)?;
        Ok(z.f_mul(&a)?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?)
    }

    /// One turn: pooled text features and the encoder's conditioning
    /// (`[batch, N_CONDITIONING]`) update the tonic GRU state (`None`: zeros)
    /// and the heads read both.
    pub fn appraise(
        &self,
        pooled: &Tensor,
        conditioning: &Tensor,
        previous: Option<&Tensor>,
    ) -> Result<ErmOutput> {
        let b = pooled.size()[0];
        let h_prev = match previous {
            Some(h) => h.shallow_clone(),
            None => Tensor::f_zeros([b, self.width], (Kind::Float, pooled.device()))?,
        };
        let input = Tensor::f_cat(
            &[
                pooled,
                &conditioning.f_expand([b, N_CONDITIONING as i64], false)?,
            ],
            1,
        )?;
        let gi = self.gru_ih.forward(&input)?.f_chunk(3, 1)?;
        let gh = self.gru_hh.forward(&h_prev)?.f_chunk(3, 1)?;
        let r = gi[0].f_add(&gh[0])?.f_sigmoid()?;
        let z = gi[1].f_add(&gh[1])?.f_sigmoid()?;
        let n = gi[2].f_add(&r.f_mul(&gh[2])?)?.f_tanh()?;
        let tonic = z
            .f_neg()?
            .f_add_scalar(1.0)?
            .f_mul(&n)?
            .f_add(&z.f_mul(&h_prev)?)?;
        let emotions = self
            .heads
            .forward(&Tensor::f_cat(&[pooled, &tonic], 1)?)?
            .f_sigmoid()?;
        Ok(ErmOutput {
            emotions,
            tonic,
            input,
        })
    }

    /// Binary cross-entropy of the heads against [`erm_targets`] of `contexts`.
    pub fn loss(&self, emotions: &Tensor, contexts: &[&EmotionalContext]) -> Result<Tensor> {
        let flat: Vec<f32> = contexts.iter().flat_map(|c| erm_targets(c)).collect();
        let t = Tensor::f_from_slice(&flat)?
            .f_view([contexts.len() as i64, N_ERM as i64])?
            .f_to_device(emotions.device())?;
        self.loss_to(emotions, &t)
    }

    /// Binary cross-entropy of the heads `[batch, N_ERM]` against targets
    /// of the same shape in [0, 1].
    pub fn loss_to(&self, emotions: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let e = emotions.f_clamp(1e-6, 1.0 - 1e-6)?;
        let t = targets;
        let l = t
            .f_mul(&e.f_log()?)?
            .f_add(
                &t.f_neg()?
                    .f_add_scalar(1.0)?
                    .f_mul(&e.f_neg()?.f_add_scalar(1.0)?.f_log()?)?,
            )?
            .f_neg()?
            .f_mean(Kind::Float)?;
        Ok(l)
    }

    /// A logits processor closure for an ERM state `[batch, N_ERM]`: adds the
    /// modulator's bias, divides by the modulated temperature. Works on
    /// `[batch, seq, vocab]` and `[batch, vocab]` logits.
    pub fn logits_fn(
        &self,
        emotions: &Tensor,
    ) -> Result<impl Fn(&Tensor) -> emorl_lm::Result<Tensor> + 'static> {
        let bias = self.logit_modulator.bias(emotions)?; // [b, V]
        let temp = self.temperature_modulator.temperature(emotions)?; // [b]
        Ok(move |logits: &Tensor| -> emorl_lm::Result<Tensor> {
            let (b, t) = if logits.dim() == 3 {
                (
                    bias.f_unsqueeze(1).map_err(lm_err)?,
                    temp.f_view([-1, 1, 1]).map_err(lm_err)?,
                )
            } else {
                (bias.shallow_clone(), temp.f_view([-1, 1]).map_err(lm_err)?)
            };
            logits.f_add(&b).map_err(lm_err)?.f_div(&t).map_err(lm_err)
        })
    }
}

/// Maps the four encoder emotions into ERM order (anxiety and confidence
/// neutral), for agents whose modules want an ERM-shaped state.
pub fn erm_from_encoder(phasic: &Tensor) -> Result<Tensor> {
    let b = phasic.size()[0];
    let rest = Tensor::f_full(
        [b, (N_ERM - N_EMOTIONS) as i64],
        0.5,
        (Kind::Float, phasic.device()),
    )?;
    Ok(Tensor::f_cat(&[phasic, &rest], 1)?)
}
