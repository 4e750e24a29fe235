//! DQN agents by ID: the learner's default hyperparameters plus a fear module.

use crate::config::{
    CoupledCliffConfig, CoupledGridConfig, DecoupledFearConfig, DqnConfig, FearConfig,
};
use emorl_core::registry::Registry;

/// Default hyperparameters of a registered agent.
pub type MakeDqnConfig = fn() -> DqnConfig;

fn with_fear(fear: FearConfig) -> DqnConfig {
    DqnConfig {
        fear: Some(fear),
        ..Default::default()
    }
}

pub fn registry() -> Registry<MakeDqnConfig> {
    let mut r: Registry<MakeDqnConfig> = Registry::new("DQN agent");
    r.register(
        "dqn",
        "DQN: MLP 64-64, replay 10k, batch 64, target copy every 100 updates, eps 0.1 (Exp 16b standard)",
        DqnConfig::default,
    );
    r.register(
        "fear-dqn",
        "DQN + a separately trained fear network (per-action danger) biasing action choice within the Q range",
        || with_fear(FearConfig::Decoupled(DecoupledFearConfig::default())),
    );
    r.register(
        "fear-dqn-coupled",
        "upstream Exp 16b emotional DQN: fear input (of s'), fear-weighted loss and LR, fear-softened eps and softmax",
        || with_fear(FearConfig::CoupledGrid(CoupledGridConfig::default())),
    );
    r.register(
        "fear-dqn-coupled-cliff",
        "upstream Exp 18 Fear-ED DQN: tonic fear mutated per sample, fear input and loss weight, forced 'up'",
        || with_fear(FearConfig::CoupledCliff(CoupledCliffConfig::default())),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_agent_validates_and_roundtrips_through_toml() {
        for e in registry().entries() {
            let cfg = (e.make)();
            cfg.validate().expect("valid");
            let text = toml::to_string(&cfg).expect("serialise");
            let back: DqnConfig = toml::from_str(&text).expect("parse");
            assert_eq!(back, cfg, "{}", e.id);
        }
        assert!(registry().get("fear-dqn").is_ok());
        assert!(registry().get("fear_dqn").is_err());
    }
}
