//! `emorl generate`: text from the frozen model, or from a trained LLM agent
//! under a given or computed emotional state.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use crate::llm_setup::{load_model_for_generation, Weights};

/// `emorl generate`'s options.
#[derive(Args)]
pub struct GenerateArgs {
    /// `default` (SmolLM2-135M-Instruct), a .gguf file or a Hugging Face
    /// directory [default: with --checkpoint, the model it was trained on;
    /// else default].
    #[arg(long)]
    pub model: Option<String>,
    /// Generate with a trained LLM agent (a checkpoint directory of `emorl
    /// train --env dialogue`): the prompt is the user's message, answered
    /// with the agent's modules and its decoding settings.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// With --checkpoint: the emotional state to answer in, e.g.
    /// `fear=0.9,joy=0.1` (others 0); without it the agent's encoder computes
    /// the state from the message.
    #[arg(long, requires = "checkpoint")]
    pub emotion: Option<String>,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (instruct models).
    #[arg(long)]
    pub chat: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Keep only the k most likely tokens when sampling (0: all).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub top_k: usize,
    /// Nucleus sampling threshold when sampling.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// How to hold the frozen weights: auto keeps the file's quantization
    /// for the decode steps (SmolLM2's Q4_1 file: int4 blocks, int8 output
    /// layer), f32 is the dense reference, bf16 dense bfloat16, int8/int4
    /// packed decode weights everywhere.
    #[arg(long, value_enum, default_value_t = Weights::Auto)]
    pub weights: Weights,
}

/// Generates from `--prompt` with the frozen model, or with a trained agent
/// (`--checkpoint`), printing tokens as they come and the speed to stderr.
pub fn generate(g: GenerateArgs) -> Result<()> {
    use emorl_lm::{GenerateOptions, Sampling};
    use std::io::Write;
    if let Some(checkpoint) = &g.checkpoint {
        let model = g.model.as_deref();
        let text = crate::chat::generate_with_agent(
            checkpoint,
            model,
            g.weights,
            &g.prompt,
            g.emotion.as_deref(),
            g.seed,
        )?;
        println!("{text}");
        return Ok(());
    }
    if !(g.temperature >= 0.0 && g.temperature.is_finite()) {
        anyhow::bail!(
            "--temperature must be a finite number >= 0 (got {})",
            g.temperature
        );
    }
    if !(g.top_p > 0.0 && g.top_p <= 1.0) {
        anyhow::bail!("--top-p must be in (0, 1] (got {})", g.top_p);
    }
    let t0 = std::time::Instant::now();
    let (mut model, held) =
        load_model_for_generation(g.model.as_deref().unwrap_or("default"), g.weights)?;
    let load_s = t0.elapsed().as_secs_f64();
    let opts = GenerateOptions {
        max_new_tokens: g.max_new_tokens,
        sampling: if g.temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample {
                temperature: g.temperature,
                top_k: g.top_k,
                top_p: g.top_p,
            }
        },
        seed: g.seed,
        chat: g.chat,
        ..Default::default()
    };
    let mut out = std::io::stdout();
    let mut print = |e: &emorl_lm::TokenEvent<'_>| {
        let _ = write!(out, "{}", e.text);
        let _ = out.flush();
    };
    let gens = model.generate_stream(&[g.prompt.as_str()], &opts, None, Some(&mut print))?;
    println!();
    let n: usize = gens.iter().map(|x| x.tokens.len()).sum();
    let t = model.last_generation_timing().unwrap_or_default();
    eprintln!(
        "{n} tokens; prefill {} tok/s ({} tokens), decode {} tok/s; {held} weights, threads {}, model loaded in {load_s:.2}s",
        rate(t.prefill_tokens, t.prefill_rate()),
        t.prefill_tokens,
        rate(t.decode_tokens, t.decode_rate()),
        tch::get_num_threads()
    );
    Ok(())
}

/// A rate for the summary line ("-" when nothing was measured).
fn rate(tokens: usize, per_second: f64) -> String {
    if tokens == 0 {
        "-".into()
    } else {
        format!("{per_second:.1}")
    }
}
