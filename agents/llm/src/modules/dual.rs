//! The dual-head emotional adapter (seed 004): at chosen blocks, two
//! attention heads read the residual stream — a *semantic* head over
//! learned memory slots and an *emotional* head over key/value tokens
//! projected from the emotion embedding `g_in` — and a sigmoid gate `G`
//! (from the hidden state and `g_in`) mixes them into the stream:
//! `h + (1 − G)·S(h) + G·E(h, g_in)`. The emotional head's output, pooled
//! over the response and projected, is the output emotion embedding
//! `g_out` that the propagation loss aligns with `g_in`.
//!
//! Both heads attend over slots rather than over the sequence, so a decode
//! step with the key/value cache needs no cache of its own (the frozen
//! model's attention already mixes the sequence). The output projections
//! start at zero: an untrained adapter leaves the model's output as it is.
//!
//! `g_in` is a mixture of learned embeddings of DailyDialog's seven
//! emotion labels: one-hot on a labelled response in the supervised phase;
//! from the agent's emotion state otherwise ([`label_mixture`]).

use std::sync::{Arc, Mutex};

use emorl_lm::{HookSite, Hooks, Model};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{lm_err, Result};
use crate::modules::emotion::EmotionState;
use crate::params::{invalid, Linear, ParamStore};

/// DailyDialog's emotion labels in label-id order: the rows of the
/// emotion embedding table.
pub use emorl_text::dialogues::dailydialog::Emotion as DualLabel;
/// Rows of the emotion embedding table.
pub const N_DUAL_LABELS: usize = DualLabel::ALL.len();

/// Configuration of the [`DualAdapter`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualConfig {
    /// Blocks whose output gets an adapter (negative: from the end);
    /// empty: the middle block.
    pub layers: Vec<i64>,
    /// Width of both attention heads.
    pub width: usize,
    /// Learned memory slots of the semantic head.
    pub semantic_slots: usize,
    /// Key/value tokens the emotional head projects from `g_in`.
    pub emotion_slots: usize,
    /// Width of the emotion embeddings `g_in`, `g_out`.
    pub embedding: usize,
    /// Initial bias of the gate (sigmoid(0) = 0.5: both heads alike).
    pub gate_bias: f64,
}

impl Default for DualConfig {
    fn default() -> Self {
        DualConfig {
            layers: Vec::new(),
            width: 32,
            semantic_slots: 8,
            emotion_slots: 4,
            embedding: 16,
            gate_bias: 0.0,
        }
    }
}

#[derive(Debug)]
struct Head {
    layer: usize,
    sem_q: Linear,
    sem_k: Tensor,
    sem_v: Tensor,
    sem_out: Linear,
    emo_q: Linear,
    emo_k: Linear,
    emo_v: Linear,
    emo_out: Linear,
    /// `[hidden + embedding] → 1`.
    gate: Linear,
    /// `[width] → embedding`: the pooled emotional output to `g_out`.
    pool: Linear,
}

/// What one pass with the adapter recorded, per adapted block in layer
/// order: the gate `[batch, seq, 1]` and the emotional head's output
/// before its projection `[batch, seq, width]`. Cleared by whoever reads it.
#[derive(Debug, Default)]
pub struct DualTrace {
    pub gates: Vec<Tensor>,
    pub emotional: Vec<Tensor>,
}

/// The dual-head emotional adapters.
#[derive(Debug)]
pub struct DualAdapter {
    pub(crate) params: ParamStore,
    heads: Vec<Head>,
    /// `[labels, embedding]`.
    embeddings: Tensor,
    width: i64,
    emotion_slots: i64,
}

fn copy(l: &Linear) -> Linear {
    Linear {
        weight: l.weight.shallow_clone(),
        bias: l.bias.shallow_clone(),
    }
}

/// Attention of queries `q` `[b, s, w]` over slots `k`, `v`
/// (`[n, w]` shared, or `[b, n, w]` per row).
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    width: i64,
) -> std::result::Result<Tensor, tch::TchError> {
    let kt = k.f_transpose(-1, -2)?;
    let scores = q.f_matmul(&kt)?.f_div_scalar((width as f64).sqrt())?;
    scores.f_softmax(-1, Kind::Float)?.f_matmul(v)
}

/// One block's adapter for one batch, its emotion tokens computed.
pub(crate) struct Block {
    pub(crate) sem_q: Linear,
    /// `[semantic slots, width]`.
    pub(crate) sem_k: Tensor,
    pub(crate) sem_v: Tensor,
    pub(crate) sem_out: Linear,
    pub(crate) emo_q: Linear,
    /// `[batch, emotion slots, width]`.
    pub(crate) emo_k: Tensor,
    pub(crate) emo_v: Tensor,
    pub(crate) emo_out: Linear,
    pub(crate) gate: Linear,
    /// `[batch, embedding]`.
    pub(crate) g_in: Tensor,
    pub(crate) width: i64,
}

impl Block {
    /// `(x + (1 − G)·S + G·E, G [b, s, 1], the emotional head's output [b, s, width])`
    /// for the residual stream `x` `[b, s, hidden]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
    ) -> std::result::Result<(Tensor, Tensor, Tensor), tch::TchError> {
        let s = attend(
            &self.sem_q.forward(x)?,
            &self.sem_k,
            &self.sem_v,
            self.width,
        )?;
        let e = attend(
            &self.emo_q.forward(x)?,
            &self.emo_k,
            &self.emo_v,
            self.width,
        )?;
        let (b, seq) = (x.size()[0], x.size()[1]);
        let g_rows = self.g_in.f_unsqueeze(1)?.f_expand([b, seq, -1], false)?;
        let g = self
            .gate
            .forward(&Tensor::f_cat(&[x, &g_rows], -1)?)?
            .f_sigmoid()?;
        let mixed = self
            .sem_out
            .forward(&s)?
            .f_mul(&g.f_neg()?.f_add_scalar(1.0)?)?
            .f_add(&self.emo_out.forward(&e)?.f_mul(&g)?)?;
        Ok((x.f_add(&mixed)?, g, e))
    }
}

impl DualAdapter {
    pub fn new(model: &Model, config: &DualConfig, seed: u64) -> Result<Self> {
        let layers = super::chosen_layers(model, &config.layers, "dual")?;
        if config.width == 0
            || config.semantic_slots == 0
            || config.emotion_slots == 0
            || config.embedding == 0
        {
            return Err(invalid(
                "dual: width, semantic_slots, emotion_slots and embedding must be > 0",
            ));
        }
        if !config.gate_bias.is_finite() {
            return Err(invalid("dual: gate_bias must be finite"));
        }
        let h = model.hidden_size() as i64;
        let w = config.width as i64;
        let e = config.embedding as i64;
        let (ns, ne) = (config.semantic_slots as i64, config.emotion_slots as i64);
        let mut params = ParamStore::new(seed, "dual", model.device());
        let embeddings = params.normal("embeddings", &[N_DUAL_LABELS as i64, e], 1.0)?;
        let zero_linear = |params: &mut ParamStore, name: &str| -> Result<Linear> {
            Ok(Linear {
                weight: params.constant(&format!("{name}.weight"), &[w, h], 0.0)?,
                bias: params.constant(&format!("{name}.bias"), &[h], 0.0)?,
            })
        };
        let heads = layers
            .iter()
            .map(|&layer| {
                let p = |n: &str| format!("l{layer}.{n}");
                let sem_q = params.linear(&p("sem_q"), h, w)?;
                let sem_k = params.normal(&p("sem_k"), &[ns, w], 1.0)?;
                let sem_v = params.normal(&p("sem_v"), &[ns, w], 1.0)?;
                let sem_out = zero_linear(&mut params, &p("sem_out"))?;
                let emo_q = params.linear(&p("emo_q"), h, w)?;
                let emo_k = params.linear(&p("emo_k"), e, ne * w)?;
                let emo_v = params.linear(&p("emo_v"), e, ne * w)?;
                let emo_out = zero_linear(&mut params, &p("emo_out"))?;
                let gate = Linear {
                    weight: params.normal(&p("gate.weight"), &[h + e, 1], 0.01)?,
                    bias: params.constant(&p("gate.bias"), &[1], config.gate_bias)?,
                };
                let pool = params.linear(&p("pool"), w, e)?;
                Ok(Head {
                    layer,
                    sem_q,
                    sem_k,
                    sem_v,
                    sem_out,
                    emo_q,
                    emo_k,
                    emo_v,
                    emo_out,
                    gate,
                    pool,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DualAdapter {
            params,
            heads,
            embeddings,
            width: w,
            emotion_slots: ne,
        })
    }

    /// The blocks with an adapter.
    pub fn layers(&self) -> Vec<usize> {
        self.heads.iter().map(|h| h.layer).collect()
    }

    /// `g_in` `[batch, embedding]` of label mixtures `[batch, labels]`.
    pub fn embed(&self, mixture: &Tensor) -> Result<Tensor> {
        Ok(mixture.f_matmul(&self.embeddings)?)
    }

    /// `g_out` `[batch, embedding]`: the emotional heads' outputs of a
    /// trace mean-pooled over the positions `weights` `[batch, seq]`
    /// selects, projected per block and averaged over blocks.
    pub fn output_embedding(&self, trace: &DualTrace, weights: &Tensor) -> Result<Tensor> {
        if trace.emotional.len() != self.heads.len() {
            return Err(invalid(
                "dual: the trace is not of one pass with this adapter",
            ));
        }
        let w = weights.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?;
        let denom = w
            .f_sum_dim_intlist(1, false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let mut sum: Option<Tensor> = None;
        for (head, e) in self.heads.iter().zip(&trace.emotional) {
            let pooled = e
                .f_mul(&w)?
                .f_sum_dim_intlist(1, false, Kind::Float)?
                .f_div(&denom)?;
            let g = head.pool.forward(&pooled)?;
            sum = Some(match sum {
                Some(s) => s.f_add(&g)?,
                None => g,
            });
        }
        match sum {
            Some(s) => Ok(s.f_div_scalar(self.heads.len() as f64)?),
            None => Err(invalid("dual: no adapted block")),
        }
    }

    /// Registers the adapters for `g_in` (`[batch or 1, embedding]`);
    /// with `trace`, each block records its gate and emotional output.
    pub fn attach_embedding<'a>(
        &self,
        hooks: Hooks<'a>,
        g_in: &Tensor,
        trace: Option<Arc<Mutex<DualTrace>>>,
    ) -> Result<Hooks<'a>> {
        let (w, ne) = (self.width, self.emotion_slots);
        let b = g_in.size()[0];
        let mut hooks = hooks;
        for head in &self.heads {
            // Per-row emotion tokens: [b, ne, w].
            let ek = head.emo_k.forward(g_in)?.f_view([b, ne, w])?;
            let ev = head.emo_v.forward(g_in)?.f_view([b, ne, w])?;
            let block = Block {
                sem_q: copy(&head.sem_q),
                sem_k: head.sem_k.shallow_clone(),
                sem_v: head.sem_v.shallow_clone(),
                sem_out: copy(&head.sem_out),
                emo_q: copy(&head.emo_q),
                emo_k: ek,
                emo_v: ev,
                emo_out: copy(&head.emo_out),
                gate: copy(&head.gate),
                g_in: g_in.shallow_clone(),
                width: w,
            };
            let trace = trace.clone();
            hooks =
                hooks.with_adapter_fn(head.layer, HookSite::AfterMlp, move |_, _, x: &Tensor| {
                    let (y, g, e) = block.forward(x).map_err(lm_err)?;
                    if let Some(t) = &trace {
                        if let Ok(mut t) = t.lock() {
                            t.gates.push(g);
                            t.emotional.push(e);
                        }
                    }
                    Ok(y)
                });
        }
        Ok(hooks)
    }

    /// Registers the adapters for the emotion `state` (a policy's turn):
    /// `g_in` from its label mixture.
    pub fn attach<'a>(&self, hooks: Hooks<'a>, state: &EmotionState) -> Result<Hooks<'a>> {
        let g_in = self.embed(&label_mixture(&state.phasic)?)?;
        self.attach_embedding(hooks, &g_in, None)
    }
}

/// The label mixture `[batch, 7]` of emorl's four emotions `[batch, 4]`
/// (fear, curiosity, anger, joy): fear → fear, anger → anger, joy →
/// happiness, curiosity → surprise, and "none" for what the strongest
/// emotion leaves (1 − max), normalised. Disgust and sadness have no
/// column in the state and get no weight.
pub fn label_mixture(phasic: &Tensor) -> Result<Tensor> {
    let col = |i: i64| phasic.f_select(1, i)?.f_clamp(0.0, 1.0);
    let (fear, curiosity, anger, joy) = (col(0)?, col(1)?, col(2)?, col(3)?);
    let strongest = phasic.f_clamp(0.0, 1.0)?.f_amax([1].as_slice(), false)?;
    let none = strongest.f_neg()?.f_add_scalar(1.0)?;
    let zero = none.f_zeros_like()?;
    let m = Tensor::f_stack(&[&none, &anger, &zero, &fear, &joy, &zero, &curiosity], 1)?;
    let total = m
        .f_sum_dim_intlist(1, true, Kind::Float)?
        .f_clamp_min(1e-6)?;
    Ok(m.f_div(&total)?)
}

/// One-hot label mixtures `[n, 7]` of DailyDialog label names (an unknown
/// name is an error).
pub fn one_hot_labels(labels: &[&str], device: tch::Device) -> Result<Tensor> {
    let mut m = vec![0f32; labels.len() * N_DUAL_LABELS];
    for (r, l) in labels.iter().enumerate() {
        let i = DualLabel::from_name(l)
            .ok_or_else(|| invalid(format!("dual: unknown emotion label '{l}'")))?;
        m[r * N_DUAL_LABELS + usize::from(i.label())] = 1.0;
    }
    Ok(Tensor::f_from_slice(&m)?
        .f_view([labels.len() as i64, N_DUAL_LABELS as i64])?
        .f_to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn lin(w: &[f32], wshape: &[i64], b: &[f32]) -> Linear {
        Linear {
            weight: t(w, wshape),
            bias: t(b, &[b.len() as i64]),
        }
    }

    /// Hidden 2, width 1, one row of two positions. Zero query weights make
    /// both heads attend uniformly: S = mean(sem_v) = 2, E = mean of the
    /// emotion values = 0.5; the gate reads only its bias, G = sigmoid(1);
    /// the output projections map width 1 to hidden 2.
    #[test]
    fn a_block_mixes_the_heads_by_the_gate() {
        let block = Block {
            sem_q: lin(&[0.0, 0.0], &[2, 1], &[0.0]),
            sem_k: t(&[1.0, -1.0], &[2, 1]),
            sem_v: t(&[1.0, 3.0], &[2, 1]),
            sem_out: lin(&[1.0, 2.0], &[1, 2], &[0.0, 0.5]),
            emo_q: lin(&[0.0, 0.0], &[2, 1], &[0.0]),
            emo_k: t(&[0.3, 0.7], &[1, 2, 1]),
            emo_v: t(&[0.0, 1.0], &[1, 2, 1]),
            emo_out: lin(&[4.0, -2.0], &[1, 2], &[0.0, 0.0]),
            gate: lin(&[0.0, 0.0, 0.0], &[3, 1], &[1.0]),
            g_in: t(&[0.25], &[1, 1]),
            width: 1,
        };
        let x = t(&[0.1, 0.2, 0.3, 0.4], &[1, 2, 2]);
        let (y, g, e) = block.forward(&x).unwrap();
        let gv = 1.0 / (1.0 + (-1.0f64).exp());
        // S·W_s + b_s = (2, 4.5); E·W_e = (2, -1).
        let want =
            |x0: f64, x1: f64| [x0 + (1.0 - gv) * 2.0 + gv * 2.0, x1 + (1.0 - gv) * 4.5 - gv];
        let y: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        let mut expected = Vec::new();
        expected.extend(want(0.1, 0.2));
        expected.extend(want(0.3, 0.4));
        for (a, b) in y.iter().zip(&expected) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{y:?} vs {expected:?}");
        }
        let g: Vec<f32> = Vec::try_from(g.flatten(0, -1)).unwrap();
        assert!(g.iter().all(|v| (f64::from(*v) - gv).abs() < 1e-6));
        let e: Vec<f32> = Vec::try_from(e.flatten(0, -1)).unwrap();
        assert!(e.iter().all(|v| (v - 0.5).abs() < 1e-6), "{e:?}");
    }

    #[test]
    fn the_state_maps_to_label_mixtures() {
        // fear 0.8 → none 0.2, fear 0.8; nothing → none; joy and curiosity
        // 0.5 each → none 0.5 and both, normalised by 1.5.
        let m = label_mixture(&t(
            &[0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.5],
            &[3, 4],
        ))
        .unwrap();
        let m: Vec<f32> = Vec::try_from(m.flatten(0, -1)).unwrap();
        let third = 1.0 / 3.0;
        let want = [
            0.2, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, //
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            third, 0.0, 0.0, 0.0, third, 0.0, third,
        ];
        for (a, b) in m.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{m:?}");
        }
        let oh = one_hot_labels(&["happiness", "none"], tch::Device::Cpu).unwrap();
        assert_eq!(oh.sum(Kind::Float).double_value(&[]), 2.0);
        assert_eq!(oh.double_value(&[0, 4]), 1.0);
        assert_eq!(oh.double_value(&[1, 0]), 1.0);
        assert!(one_hot_labels(&["joy"], tch::Device::Cpu).is_err());
    }
}
