//! Generates from a model, streaming tokens to stdout.
//!
//! `cargo run --example generate -- [MODEL] [PROMPT] [--chat] [--sample]`
use std::io::Write;

use emorl_lm::{DType, GenerateOptions, Model, Sampling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&str> = args
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|s| s.as_str())
        .collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let mut model = match pos.first() {
        Some(p) => Model::load(p, DType::F32)?,
        None => Model::load_default(DType::F32)?,
    };
    let prompt = pos.get(1).map(|s| s.as_str()).unwrap_or("Once upon a time");
    let opts = GenerateOptions {
        max_new_tokens: 100,
        chat: flags.contains(&"--chat"),
        sampling: if flags.contains(&"--sample") {
            Sampling::Sample {
                temperature: 0.8,
                top_k: 50,
                top_p: 0.95,
            }
        } else {
            Sampling::Greedy
        },
        ..Default::default()
    };
    print!("{prompt}");
    let mut cb = |e: &emorl_lm::TokenEvent<'_>| {
        print!("{}", e.text);
        let _ = std::io::stdout().flush();
    };
    let out = model.generate_stream(&[prompt], &opts, None, Some(&mut cb))?;
    println!(
        "\n[{} tokens, {:?}]",
        out[0].tokens.len(),
        out[0].finish_reason
    );
    Ok(())
}
