//! Every environment and agent the CLI knows, by string ID, grouped by family
//! (which training loop drives them).

use emorl_core::registry::Registry;
use emorl_core::{DiscreteEnv, RngHandle};

/// How an agent is built and trained.
#[derive(Clone, Copy)]
pub enum AgentFamily {
    /// A Q-learner with emotion channels (`emorl_agents_tabular`).
    Tabular(emorl_agents_tabular::MakeAgentConfig),
}

/// How an environment is built.
#[derive(Clone, Copy)]
pub enum EnvFamily {
    /// Finite states and actions.
    Discrete(fn(RngHandle) -> Box<dyn DiscreteEnv>),
    /// Text observations and responses (played by people or LLM agents).
    Text,
}

pub fn agents() -> Registry<AgentFamily> {
    let mut r = Registry::new("agent");
    for e in emorl_agents_tabular::registry().entries() {
        r.register(e.id, e.description, AgentFamily::Tabular(e.make));
    }
    r
}

pub fn envs() -> Registry<EnvFamily> {
    let mut r = Registry::new("environment");
    for e in emorl_envs_gridworld::registry().entries() {
        r.register(e.id, e.description, EnvFamily::Discrete(e.make));
    }
    r.register(
        emorl_envs_dialogue::DIALOGUE_ID,
        emorl_envs_dialogue::DIALOGUE_DESCRIPTION,
        EnvFamily::Text,
    );
    r.register(
        emorl_envs_dialogue::IGT_ID,
        emorl_envs_dialogue::IGT_DESCRIPTION,
        EnvFamily::Text,
    );
    r.register(
        emorl_envs_dialogue::GRIDWORLD_TEXT_ID,
        emorl_envs_dialogue::GRIDWORLD_TEXT_DESCRIPTION,
        EnvFamily::Text,
    );
    r
}
