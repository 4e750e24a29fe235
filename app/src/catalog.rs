//! Every environment and agent the CLI knows, by string ID, grouped by family
//! (which training loop drives them).

use emorl_core::registry::Registry;
use emorl_core::{DiscreteEnv, RngHandle};

/// How an agent is built and trained.
#[derive(Clone, Copy)]
pub enum AgentFamily {
    /// A Q-learner with emotion channels (`emorl_agents_tabular`).
    Tabular(emorl_agents_tabular::MakeAgentConfig),
    /// A deep Q-network with an optional fear module (`emorl_agents_dqn`).
    Dqn(emorl_agents_dqn::MakeDqnConfig),
    /// A scripted, non-learning dialogue policy (baselines for `dialogue`).
    Scripted(emorl_envs_text::PolicyKind),
    /// A frozen language model with emotional modules (`emorl_agents_llm`).
    Llm(emorl_agents_llm::AgentKind),
}

/// Which text environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEnv {
    Dialogue,
    Igt,
    GridworldText,
}

/// How an environment is built.
#[derive(Clone, Copy)]
pub enum EnvFamily {
    /// Finite states and actions.
    Discrete(fn(RngHandle) -> Box<dyn DiscreteEnv>),
    /// Text observations and responses (played by people, scripts or LLM agents).
    Text(TextEnv),
}

/// Whether `emorl train` runs an agent of `agent` in an environment of
/// `env` (what `emorl agents` lists; `train` names the reason when not).
pub fn trains_in(agent: &AgentFamily, env: &EnvFamily) -> bool {
    matches!(
        (agent, env),
        (
            AgentFamily::Tabular(_) | AgentFamily::Dqn(_),
            EnvFamily::Discrete(_)
        ) | (
            AgentFamily::Scripted(_) | AgentFamily::Llm(_),
            EnvFamily::Text(TextEnv::Dialogue)
        )
    )
}

pub fn agents() -> Registry<AgentFamily> {
    let mut r = Registry::new("agent");
    for e in emorl_agents_tabular::registry().entries() {
        r.register(e.id, e.description, AgentFamily::Tabular(e.make));
    }
    for e in emorl_agents_dqn::registry().entries() {
        r.register(e.id, e.description, AgentFamily::Dqn(e.make));
    }
    for (kind, description) in [
        (
            emorl_envs_text::PolicyKind::RandomTemplate,
            "dialogue baseline: a random canned reply each turn (no learning)",
        ),
        (
            emorl_envs_text::PolicyKind::Generic,
            "dialogue baseline: always the same polite answer (no learning)",
        ),
        (
            emorl_envs_text::PolicyKind::Oracle,
            "dialogue upper bound: sees the scenario label and answers in the right style",
        ),
    ] {
        r.register(kind.id(), description, AgentFamily::Scripted(kind));
    }
    for kind in emorl_agents_llm::AgentKind::ALL {
        let description = emorl_agents_llm::AGENT_IDS
            .iter()
            .find(|(id, _)| *id == kind.id())
            .map_or("", |(_, d)| *d);
        r.register(kind.id(), description, AgentFamily::Llm(kind));
    }
    r
}

pub fn envs() -> Registry<EnvFamily> {
    let mut r = Registry::new("environment");
    for e in emorl_envs_gridworld::registry().entries() {
        r.register(e.id, e.description, EnvFamily::Discrete(e.make));
    }
    r.register(
        emorl_envs_text::DIALOGUE_ID,
        emorl_envs_text::DIALOGUE_DESCRIPTION,
        EnvFamily::Text(TextEnv::Dialogue),
    );
    r.register(
        emorl_envs_text::IGT_ID,
        emorl_envs_text::IGT_DESCRIPTION,
        EnvFamily::Text(TextEnv::Igt),
    );
    r.register(
        emorl_envs_text::GRIDWORLD_TEXT_ID,
        emorl_envs_text::GRIDWORLD_TEXT_DESCRIPTION,
        EnvFamily::Text(TextEnv::GridworldText),
    );
    r
}
