//! The LLM-policy agent: a frozen [`Model`] plus the emotional modules its
//! kind selects, composed into one [`Hooks`] per turn.

use emorl_core::EmotionalContext;
use emorl_envs_text::DialogueObs;
use emorl_lm::{ChatMessage, GenerateOptions, Generation, Hooks, Model, Sampling};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch::pad_left;
use crate::error::{LlmAgentError, Result};
use crate::modules::dual::{DualAdapter, DualConfig};
use crate::modules::emotion::{EmotionState, EmotionalEncoder, EncoderConfig, N_CONDITIONING};
use crate::modules::erm::{EmotionalRewardModel, ErmConfig};
use crate::modules::gate::{EmotionalGate, GateConfig};
use crate::modules::lora::{EmotionalLora, LoraConfig};
use crate::modules::neuro::{EmotionSource, NeuroSource, NeuroSourceConfig};
use crate::modules::prefix::{PrefixConfig, PrefixGenerator};
use crate::modules::reft::{EmotionalReft, ReftConfig};
use crate::modules::steering::{DirectionSource, SteeringConfig, SteeringVectors};
use crate::modules::{Modules, TurnEmotion};
use crate::optim::AdamW;
use crate::params::invalid;

/// Registry IDs of the LLM agents with one-line descriptions.
pub const AGENT_IDS: [(&str, &str); 11] = [
    ("llm-base", "The frozen language model alone (no modules)"),
    (
        "llm-prompted",
        "Emotional encoder whose state is described in the system prompt (EmotionPrompt-style baseline; nothing trained by RL)",
    ),
    (
        "llm-static-prefix",
        "Learned prefix keys/values that ignore the emotion state (prefix-tuning baseline)",
    ),
    (
        "llm-prefix",
        "Emotional encoder + emotion-conditioned prefix keys/values at every layer",
    ),
    (
        "llm-gate",
        "Emotional encoder + bottleneck adapters mixed in by an emotion-computed gate",
    ),
    (
        "llm-erm",
        "Emotional encoder + emotional reward model driving vocabulary biases and temperature",
    ),
    (
        "llm-steer",
        "Emotional encoder + emotion steering directions from GoEmotions, learned scales, on the response",
    ),
    (
        "llm-reft",
        "Emotional encoder + emotion-conditioned low-rank (ReFT-style) interventions on the response",
    ),
    (
        "llm-neuro",
        "Neurochemical dynamics (the emotion engine) blending emotional LoRA adapters on the attention projections, one per emotion, trained on labelled text",
    ),
    (
        "llm-full",
        "Encoder, prefix, gate, reward model and steering together",
    ),
    (
        "llm-dual",
        "Emotional encoder + dual-head emotional adapters (semantic and emotional attention mixed by a gate), first trained on DailyDialog responses (seed 004)",
    ),
];

/// Which modules an agent has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    #[serde(rename = "llm-base")]
    Base,
    #[serde(rename = "llm-prompted")]
    Prompted,
    #[serde(rename = "llm-static-prefix")]
    StaticPrefix,
    #[serde(rename = "llm-prefix")]
    Prefix,
    #[serde(rename = "llm-gate")]
    Gate,
    #[serde(rename = "llm-erm")]
    Erm,
    #[serde(rename = "llm-steer")]
    Steer,
    #[serde(rename = "llm-reft")]
    Reft,
    #[serde(rename = "llm-neuro")]
    Neuro,
    #[serde(rename = "llm-full")]
    Full,
    #[serde(rename = "llm-dual")]
    Dual,
}

impl AgentKind {
    pub const ALL: [AgentKind; 11] = [
        AgentKind::Base,
        AgentKind::Prompted,
        AgentKind::StaticPrefix,
        AgentKind::Prefix,
        AgentKind::Gate,
        AgentKind::Erm,
        AgentKind::Steer,
        AgentKind::Reft,
        AgentKind::Neuro,
        AgentKind::Full,
        AgentKind::Dual,
    ];

    /// The registry ID.
    pub fn id(self) -> &'static str {
        match self {
            AgentKind::Base => "llm-base",
            AgentKind::Prompted => "llm-prompted",
            AgentKind::StaticPrefix => "llm-static-prefix",
            AgentKind::Prefix => "llm-prefix",
            AgentKind::Gate => "llm-gate",
            AgentKind::Erm => "llm-erm",
            AgentKind::Steer => "llm-steer",
            AgentKind::Reft => "llm-reft",
            AgentKind::Neuro => "llm-neuro",
            AgentKind::Full => "llm-full",
            AgentKind::Dual => "llm-dual",
        }
    }

    /// The kind of a registry ID.
    pub fn from_id(id: &str) -> Result<AgentKind> {
        AgentKind::ALL
            .into_iter()
            .find(|k| k.id() == id)
            .ok_or_else(|| LlmAgentError::UnknownAgent {
                id: id.to_string(),
                known: AGENT_IDS.map(|(id, _)| id).join(", "),
            })
    }

    /// Whether RL has anything to train (`llm-base` has no modules; the
    /// prompted baseline's only module, the encoder, is reached by no
    /// gradient of the policy: its state enters the prompt as text).
    pub fn trained_by_rl(self) -> bool {
        !matches!(self, AgentKind::Base | AgentKind::Prompted)
    }

    /// Whether the emotion state is written into the prompt.
    pub fn describes_emotion(self) -> bool {
        matches!(self, AgentKind::Prompted)
    }

    fn has_encoder(self) -> bool {
        !matches!(self, AgentKind::Base | AgentKind::StaticPrefix)
    }
    fn has_prefix(self) -> bool {
        matches!(
            self,
            AgentKind::StaticPrefix | AgentKind::Prefix | AgentKind::Full
        )
    }
    fn has_gate(self) -> bool {
        matches!(self, AgentKind::Gate | AgentKind::Full)
    }
    fn has_erm(self) -> bool {
        matches!(self, AgentKind::Erm | AgentKind::Full)
    }
    pub(crate) fn has_steering(self) -> bool {
        matches!(self, AgentKind::Steer | AgentKind::Full)
    }
    fn has_reft(self) -> bool {
        matches!(self, AgentKind::Reft)
    }
    fn has_lora(self) -> bool {
        matches!(self, AgentKind::Neuro)
    }
    fn has_dual(self) -> bool {
        matches!(self, AgentKind::Dual)
    }
    /// The emotion source the kind uses: `llm-neuro` always reads the
    /// neurochemical dynamics; the others `configured`.
    fn emotion_source(self, configured: EmotionSource) -> EmotionSource {
        match self {
            AgentKind::Neuro => EmotionSource::Neuro,
            _ => configured,
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Configuration of an [`LlmAgent`]: generation settings and every module's
/// settings (modules the kind does not use ignore theirs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Most tokens per response.
    pub max_new_tokens: usize,
    /// Sampling temperature of `act` (0: greedy).
    pub temperature: f64,
    /// Sample only among the `top_k` most likely tokens when acting,
    /// evaluating, chatting and serving (0: all; seed 004's dual-head
    /// decoder samples top-k at inference). RL samples from the whole
    /// distribution whatever this says.
    pub top_k: usize,
    /// Seed of module initialisation and of `act`'s sampling.
    pub seed: u64,
    /// Wrap prompts in the model's chat template; `None`: when it has one.
    pub chat: Option<bool>,
    /// Where the emotion state comes from: the learned encoder or the
    /// neurochemical dynamics (`emorl train --emotion-source neuro`).
    pub emotion_source: EmotionSource,
    pub encoder: EncoderConfig,
    /// The neurochemical source's settings (`emotion_source = "neuro"`).
    pub neuro: NeuroSourceConfig,
    pub prefix: PrefixConfig,
    pub gate: GateConfig,
    pub erm: ErmConfig,
    pub steering: SteeringConfig,
    pub reft: ReftConfig,
    pub lora: LoraConfig,
    /// The dual-head emotional adapters (`llm-dual`).
    pub dual: DualConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_new_tokens: 64,
            temperature: 0.7,
            top_k: 0,
            seed: 0,
            chat: None,
            emotion_source: EmotionSource::Encoder,
            encoder: EncoderConfig::default(),
            neuro: NeuroSourceConfig::default(),
            prefix: PrefixConfig::default(),
            gate: GateConfig::default(),
            erm: ErmConfig::default(),
            steering: SteeringConfig::default(),
            reft: ReftConfig::default(),
            lora: LoraConfig::default(),
            dual: DualConfig::default(),
        }
    }
}

/// The system message of an agent that describes its emotion: each
/// emotion's strength in words (EmotionPrompt-style), e.g. "You feel strong
/// fear and slight joy." or "You feel calm and neutral."
pub fn describe_emotion(phasic: &[f32]) -> String {
    let parts: Vec<String> = crate::modules::emotion::EMOTIONS
        .iter()
        .zip(phasic)
        .filter_map(|(name, &v)| {
            let strength = match v {
                v if v >= 0.75 => "strong",
                v if v >= 0.5 => "clear",
                v if v >= 0.25 => "slight",
                _ => return None,
            };
            Some(format!("{strength} {name}"))
        })
        .collect();
    let feeling = match parts.as_slice() {
        [] => "You feel calm and neutral.".to_string(),
        [one] => format!("You feel {one}."),
        [rest @ .., last] => format!("You feel {} and {last}.", rest.join(", ")),
    };
    format!("{feeling} Let this feeling show in the words of your reply.")
}

/// What the agent carries across the turns of one conversation.
#[derive(Debug, Default)]
struct EpisodeState {
    /// What the emotion source carries to the next turn.
    carry: Option<Tensor>,
    erm_tonic: Option<Tensor>,
    /// The last turn's ERM input and previous tonic state (phase-3 feedback).
    last_erm: Option<(Tensor, Option<Tensor>)>,
    last_emotion: Vec<(String, f64)>,
}

/// A frozen language model with emotional modules.
#[derive(Debug)]
pub struct LlmAgent {
    pub(crate) model: Model,
    kind: AgentKind,
    config: AgentConfig,
    pub(crate) modules: Modules,
    episode: EpisodeState,
    acts: u64,
    erm_opt: Option<AdamW>,
}

impl LlmAgent {
    /// Builds the modules of `kind` for `model` (deterministically from `config.seed`).
    pub fn new(model: Model, kind: AgentKind, config: AgentConfig) -> Result<Self> {
        Self::build(model, kind, config, None)
    }

    /// Like [`LlmAgent::new`]; with `steering_to_restore`, the steering
    /// directions are left for a checkpoint (computed from that source) to
    /// fill instead of being computed.
    pub(crate) fn build(
        mut model: Model,
        kind: AgentKind,
        config: AgentConfig,
        steering_to_restore: Option<DirectionSource>,
    ) -> Result<Self> {
        if !(config.temperature >= 0.0 && config.temperature.is_finite()) {
            return Err(invalid("temperature must be finite and >= 0"));
        }
        if config.max_new_tokens == 0 {
            return Err(invalid("max_new_tokens must be > 0"));
        }
        // Half the context at most: the prompt and conversation need the rest.
        if config.max_new_tokens > model.max_positions() / 2 {
            return Err(invalid(format!(
                "max_new_tokens = {} is more than half the model's context of {} tokens",
                config.max_new_tokens,
                model.max_positions()
            )));
        }
        let seed = config.seed;
        let mut modules = Modules::default();
        match (
            kind.has_encoder(),
            kind.emotion_source(config.emotion_source),
        ) {
            (true, EmotionSource::Encoder) => {
                modules.encoder = Some(EmotionalEncoder::new(
                    &config.encoder,
                    seed,
                    model.device(),
                )?);
            }
            (true, EmotionSource::Neuro) => {
                modules.neuro = Some(NeuroSource::new(
                    &config.neuro,
                    config.encoder.tonic_decay,
                    model.device(),
                )?);
            }
            (false, EmotionSource::Neuro) => {
                return Err(invalid(format!(
                    "emotion_source = \"neuro\": {kind} reads no emotion (use an agent with modules that do)"
                )));
            }
            (false, EmotionSource::Encoder) => {}
        }
        if kind.has_prefix() {
            modules.prefix = Some(PrefixGenerator::new(
                &model,
                &config.prefix,
                kind != AgentKind::StaticPrefix,
                seed,
            )?);
        }
        if kind.has_gate() {
            modules.gate = Some(EmotionalGate::new(&model, &config.gate, seed)?);
        }
        if kind.has_reft() {
            modules.reft = Some(EmotionalReft::new(&model, &config.reft, seed)?);
        }
        if kind.has_lora() {
            modules.lora = Some(EmotionalLora::new(&model, &config.lora, seed)?);
        }
        if kind.has_dual() {
            modules.dual = Some(DualAdapter::new(&model, &config.dual, seed)?);
        }
        if kind.has_erm() {
            modules.erm = Some(EmotionalRewardModel::new(&model, &config.erm, seed)?);
        }
        if kind.has_steering() {
            modules.steering = Some(match steering_to_restore {
                Some(source) => {
                    SteeringVectors::to_restore(&model, &config.steering, seed, source)?
                }
                None => SteeringVectors::new(&mut model, &config.steering, seed)?,
            });
        }
        Ok(LlmAgent {
            model,
            kind,
            config,
            modules,
            episode: EpisodeState::default(),
            acts: 0,
            erm_opt: None,
        })
    }

    /// Like [`LlmAgent::new`] with a registry ID.
    pub fn from_id(model: Model, id: &str, config: AgentConfig) -> Result<Self> {
        Self::new(model, AgentKind::from_id(id)?, config)
    }

    pub fn kind(&self) -> AgentKind {
        self.kind
    }
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// Mutable access to the frozen model (forward passes need it).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }
    pub fn modules(&self) -> &Modules {
        &self.modules
    }
    /// The modules and the model at once (computing an emotion needs both).
    pub fn parts_mut(&mut self) -> (&Modules, &mut Model) {
        (&self.modules, &mut self.model)
    }

    /// The model back, dropping the modules.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Every trainable module tensor.
    pub fn trainable_parameters(&self) -> Vec<Tensor> {
        self.modules.trainable()
    }

    /// Every module tensor by checkpoint name (`<module>.<variable>`), buffers included.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.modules
            .stores()
            .into_iter()
            .flat_map(|(m, s)| {
                s.named()
                    .into_iter()
                    .map(move |(n, t)| (format!("{m}.{n}"), t))
            })
            .collect()
    }

    /// The hooks of the agent's modules for `emotion`, the response
    /// starting at column `response_start` (see [`Modules::hooks`]).
    pub fn hooks(&self, emotion: &TurnEmotion, response_start: usize) -> Result<Hooks<'static>> {
        self.modules.hooks(emotion, response_start)
    }

    /// Whether prompts are wrapped in the chat template.
    pub fn uses_chat(&self) -> bool {
        self.config
            .chat
            .unwrap_or_else(|| self.model.tokenizer().chat_template().is_some())
    }

    /// Token ids of the prompt for an observation.
    pub fn encode_prompt(&self, obs: &DialogueObs) -> Result<Vec<u32>> {
        self.encode_prompt_for(obs, None)
    }

    /// Token ids of the prompt for an observation under the phasic
    /// emotions `phasic` (in [`crate::EMOTIONS`] order): agents that describe
    /// their emotion ([`AgentKind::describes_emotion`]) put it in a system
    /// message; the others ignore it.
    pub fn encode_prompt_for(&self, obs: &DialogueObs, phasic: Option<&[f32]>) -> Result<Vec<u32>> {
        let opts = GenerateOptions {
            chat: self.uses_chat(),
            ..GenerateOptions::default()
        };
        let mut messages = Vec::with_capacity(2);
        if let (true, Some(p)) = (self.kind.describes_emotion(), phasic) {
            messages.push(ChatMessage::system(describe_emotion(p)));
        }
        messages.push(ChatMessage::user(obs.to_prompt()));
        Ok(self.model.encode_messages(&messages, &opts)?)
    }

    /// Forgets the emotion state of the conversation (call at episode start).
    pub fn reset_episode(&mut self) {
        self.episode = EpisodeState::default();
    }

    /// Batch-mean emotions of the last `act`, by name.
    pub fn last_emotion(&self) -> &[(String, f64)] {
        &self.episode.last_emotion
    }

    /// The generation options `act` uses for its `n`-th call.
    pub fn generate_options(&self, n: u64) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.config.max_new_tokens,
            sampling: if self.config.temperature == 0.0 {
                Sampling::Greedy
            } else {
                Sampling::Sample {
                    temperature: self.config.temperature,
                    top_k: self.config.top_k,
                    top_p: 1.0,
                }
            },
            seed: self.config.seed.wrapping_add(n),
            stop_on_eos: true,
            stop_tokens: Vec::new(),
            add_special_tokens: true,
            chat: self.uses_chat(),
        }
    }

    /// Responds to `obs`; `context` is the emotional context the agent
    /// sees before acting (the environment's `context()` at the start, then
    /// each step's context). Carries the emotion state to the next turn.
    pub fn act(&mut self, obs: &DialogueObs, context: &EmotionalContext) -> Result<String> {
        Ok(self.act_generation(obs, context)?.text)
    }

    /// Like [`LlmAgent::act`], returning the whole generation (tokens, log-probs).
    pub fn act_generation(
        &mut self,
        obs: &DialogueObs,
        context: &EmotionalContext,
    ) -> Result<Generation> {
        let _g = tch::no_grad_guard();
        let described = match self.kind.describes_emotion() {
            true => self
                .modules
                .encode_state(&[context], self.episode.carry.as_ref())?,
            false => None,
        };
        let ids = match described {
            Some(state) => {
                let phasic = Vec::<f32>::try_from(&state.phasic.f_view([-1])?)?;
                self.encode_prompt_for(obs, Some(&phasic))?
            }
            None => self.encode_prompt(obs)?,
        };
        let (tokens, mask) = pad_left(std::slice::from_ref(&ids), self.model.tokenizer().pad_id())?;
        let emotion = self.modules.emotion(
            &mut self.model,
            &[context],
            self.episode.carry.as_ref(),
            self.episode.erm_tonic.as_ref(),
            &tokens,
            &mask,
            None,
        )?;
        let hooks = self.modules.hooks(&emotion, ids.len())?;
        let opts = self.generate_options(self.acts);
        self.acts += 1;
        let mut gens = self
            .model
            .generate_from_tokens(&[ids], &opts, Some(&hooks), None)?;
        self.episode.last_emotion = emotion.means()?;
        if let Some(input) = &emotion.erm_input {
            self.episode.last_erm = Some((input.shallow_clone(), self.episode.erm_tonic.take()));
        }
        self.episode.carry = Some(emotion.state.next_carry());
        self.episode.erm_tonic = emotion.erm_tonic;
        gens.pop()
            .ok_or_else(|| invalid("generation returned no sequence"))
    }

    fn erm_optimizer(&mut self) -> Result<Option<&mut AdamW>> {
        let Some(erm) = &self.modules.erm else {
            return Ok(None);
        };
        if self.erm_opt.is_none() {
            self.erm_opt = Some(AdamW::new(erm.params.trainable(), self.config.erm.lr, 0.0)?);
        }
        Ok(self.erm_opt.as_mut())
    }

    /// Phase 1: one supervised step of the ERM on `(text, context)` pairs
    /// (targets from [`crate::modules::erm::erm_targets`]; the encoder state is the
    /// neutral one, the tonic state zero). Returns the loss before the step,
    /// or `None` for an agent without an ERM.
    pub fn erm_supervised_step(
        &mut self,
        pairs: &[(String, EmotionalContext)],
    ) -> Result<Option<f64>> {
        if self.modules.erm.is_none() || pairs.is_empty() {
            return Ok(None);
        }
        let seqs = pairs
            .iter()
            .map(|(t, _)| Ok(self.model.tokenizer().encode(t, true)?))
            .collect::<Result<Vec<_>>>()?;
        if seqs.iter().any(Vec::is_empty) {
            return Err(invalid("erm: a supervision text has no tokens"));
        }
        let (tokens, mask) = pad_left(&seqs, self.model.tokenizer().pad_id())?;
        let contexts: Vec<&EmotionalContext> = pairs.iter().map(|(_, c)| c).collect();
        let device = self.model.device();
        let loss = {
            let Some(erm) = &self.modules.erm else {
                return Ok(None);
            };
            let hidden = erm.read_hidden(&mut self.model, &tokens, &mask)?;
            let pooled = erm.pool(&hidden, &mask.f_to_device(device)?)?;
            let cond = EmotionState::neutral(1, device)?.conditioning()?;
            let out = erm.appraise(&pooled, &cond, None)?;
            erm.loss(&out.emotions, &contexts)?
        };
        self.erm_apply(loss)
    }

    /// Phase 3: one online step of the ERM toward the targets of the
    /// context the last response led to (the input and tonic state of the
    /// last `act` are reused). `None` when there is no ERM or no `act` yet.
    pub fn erm_feedback_step(&mut self, context: &EmotionalContext) -> Result<Option<f64>> {
        let Some((input, prev)) = self.episode.last_erm.take() else {
            return Ok(None);
        };
        let loss = {
            let Some(erm) = &self.modules.erm else {
                return Ok(None);
            };
            let w = erm.width();
            let pooled = input.f_narrow(1, 0, w)?;
            let cond = input.f_narrow(1, w, N_CONDITIONING as i64)?;
            let out = erm.appraise(&pooled, &cond, prev.as_ref())?;
            erm.loss(&out.emotions, &[context])?
        };
        self.erm_apply(loss)
    }

    fn erm_apply(&mut self, loss: Tensor) -> Result<Option<f64>> {
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Err(LlmAgentError::Diverged {
                update: 0,
                what: format!("ERM loss is {value}"),
            });
        }
        let Some(opt) = self.erm_optimizer()? else {
            return Ok(None);
        };
        opt.zero_grad();
        loss.f_backward()?;
        opt.step()?;
        opt.zero_grad();
        Ok(Some(value))
    }
}
