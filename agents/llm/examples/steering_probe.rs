//! How long the steering directions take to build on one model, their
//! norms, and how they relate to each other and to the written pairs'.
//!
//! `cargo run --release -p emorl-agents-llm --example steering_probe -- MODEL|default [texts_per_class=100] [threads=1] [reference=N]`
//!
//! `reference=N` also builds the directions from `N` texts per class and
//! prints how close the first ones are to them (how much the sample size
//! still moves the directions).

use emorl_agents_llm::{SteeringConfig, SteeringVectors, EMOTIONS};
use emorl_lm::{DType, Model};
use tch::Tensor;

fn cosine(a: &Tensor, b: &Tensor) -> Result<f64, tch::TchError> {
    let dot = a.f_dot(b)?.f_double_value(&[])?;
    let na = a.f_norm()?.f_double_value(&[])?;
    let nb = b.f_norm()?.f_double_value(&[])?;
    Ok(dot / (na * nb))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = SteeringConfig::default();
    let mut threads = 1;
    let mut reference = None;
    for kv in args.iter().skip(1) {
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("expected key=value, got `{kv}`"))?;
        match k {
            "texts_per_class" => config.texts_per_class = v.parse()?,
            "threads" => threads = v.parse()?,
            "reference" => reference = Some(v.parse::<usize>()?),
            _ => return Err(format!("unknown key `{k}`").into()),
        }
    }
    tch::set_num_threads(threads);
    let mut model = match args.first().map(String::as_str) {
        None | Some("default") => Model::load_default(DType::F32)?,
        Some(p) => Model::load(p, DType::F32)?,
    };
    let dir = emorl_agents_llm::data::goemotions_dir().ok_or("no GoEmotions files found")?;
    let start = std::time::Instant::now();
    let texts = SteeringVectors::from_goemotions(&mut model, &config, 0, &dir)?;
    let t_texts = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let pairs = SteeringVectors::from_written_pairs(&mut model, &config, 0)?;
    let t_pairs = start.elapsed().as_secs_f64();
    println!(
        "{} layers, hidden {}, steered block {:?}, {} torch threads",
        model.n_layers(),
        model.hidden_size(),
        texts.layers(),
        threads
    );
    println!("GoEmotions ({}): {t_texts:.2} s", texts.source());
    println!("written pairs: {t_pairs:.2} s");
    for e in EMOTIONS {
        let d = texts.direction(0, e)?;
        let p = pairs.direction(0, e)?;
        println!(
            "  {e}: |d| {:.3} (pairs {:.3}), cos(GoEmotions, pairs) {:.3}",
            d.f_norm()?.f_double_value(&[])?,
            p.f_norm()?.f_double_value(&[])?,
            cosine(&d, &p)?
        );
    }
    let rows: Vec<Tensor> = EMOTIONS
        .iter()
        .map(|e| texts.direction(0, e))
        .collect::<Result<_, _>>()?;
    print!("  cos between emotions (GoEmotions):");
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            print!(
                " {}/{} {:.2}",
                EMOTIONS[i],
                EMOTIONS[j],
                cosine(&rows[i], &rows[j])?
            );
        }
    }
    println!();
    if let Some(n) = reference {
        let cfg = SteeringConfig {
            texts_per_class: n,
            ..config.clone()
        };
        let more = SteeringVectors::from_goemotions(&mut model, &cfg, 0, &dir)?;
        print!("  cos with the directions from {n} per class:");
        for e in EMOTIONS {
            print!(
                " {e} {:.3}",
                cosine(&texts.direction(0, e)?, &more.direction(0, e)?)?
            );
        }
        println!();
    }
    Ok(())
}
