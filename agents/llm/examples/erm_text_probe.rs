//! The ERM's text phase on one model with chosen settings: accuracy of its
//! four emotion heads on GoEmotions' dev split, for choosing the `erm_text`
//! defaults (training runs report the test split).
//!
//! `cargo run --release -p emorl-agents-llm --example erm_text_probe -- MODEL|default [epochs=3] [lr=3e-3] [per_class=200]`

use emorl_agents_llm::supervision::{pretrain_erm_on_corpora, ErmTextConfig};
use emorl_agents_llm::{AgentConfig, AgentKind, LlmAgent};
use emorl_lm::{DType, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32)?,
        Some(p) => Model::load(p, DType::F32)?,
    };
    let mut config = ErmTextConfig::default();
    for kv in args.iter().skip(1) {
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("expected key=value, got `{kv}`"))?;
        match k {
            "epochs" => config.epochs = v.parse()?,
            "lr" => config.lr = v.parse()?,
            "per_class" => config.per_class = v.parse()?,
            _ => return Err(format!("unknown key `{k}`").into()),
        }
    }
    let dir = emorl_agents_llm::data::goemotions_dir().ok_or("no GoEmotions files found")?;
    let dd = emorl_agents_llm::data::dailydialog_file();
    let mut agent = LlmAgent::new(model, AgentKind::Erm, AgentConfig::default())?;
    let start = std::time::Instant::now();
    let r = pretrain_erm_on_corpora(&mut agent, &dir, dd.as_deref(), &config)?
        .ok_or("no ERM text phase ran")?;
    // Settings are chosen on dev; test is what training runs report.
    println!(
        "{config:?}: train acc {:.3}, dev acc {:.3} (majority {:.3}), dev macro-F1 {:.3}, {:.1} s",
        r.train.accuracy,
        r.dev.accuracy,
        r.dev.majority_accuracy,
        r.dev.macro_f1,
        start.elapsed().as_secs_f64()
    );
    for (c, f1, n) in &r.dev.per_class {
        println!("  {c}: F1 {f1:.3} ({n})");
    }
    Ok(())
}
