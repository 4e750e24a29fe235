//! Trains the GoEmotions judge and prints its dev and test tables.
//!
//! ```text
//! cargo run --release -p emorl-text --example goemotions_judge -- \
//!     [--data DIR] [--all] [--epochs N] [--lr X] [--l2 X] [--bits N] [--seed N]
//! ```
//! Without `--all` the labels are `JUDGE_LABELS`; with it, all 28.

use emorl_text::{goemotions_judge, ClassifierConfig, GoEmotions, JUDGE_LABELS};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ClassifierConfig::default();
    let mut data_dir = String::from("../shared/data/goemotions");
    let mut all = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--all" {
            all = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => data_dir = value,
            "--epochs" => config.epochs = value.parse()?,
            "--lr" => config.learning_rate = value.parse()?,
            "--l2" => config.l2 = value.parse()?,
            "--bits" => config.hash_bits = value.parse()?,
            "--seed" => config.seed = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let data = GoEmotions::load(&data_dir)?;
    let labels: Vec<&str> = if all {
        data.labels.iter().map(String::as_str).collect()
    } else {
        JUDGE_LABELS.to_vec()
    };
    let start = Instant::now();
    let (model, test, dev) = goemotions_judge(&data, &labels, &config)?;
    let seconds = start.elapsed().as_secs_f64();
    println!("config: {config:?}");
    println!("train + tune + evaluate: {seconds:.1} s");
    println!("thresholds: {:?}", model.thresholds());
    println!("\ndev\n{dev}\n\ntest\n{test}");
    Ok(())
}
