//! The user messages the evaluation generates from, and the tuning prompts
//! that settings are chosen on (never used by a table).

use emorl_envs_text::{DialogueConfig, DialogueObs};

/// Neutral user messages the marker metric generates from (no emotion
/// words of any lexicon).
pub const EVAL_PROMPTS: [&str; 16] = [
    "Can you tell me about the weather today?",
    "What should I cook for dinner tonight?",
    "Tell me a short story about a cat.",
    "How do I plant tomatoes in my garden?",
    "Describe a walk in the park.",
    "What is a good name for a small boat?",
    "Explain how a bicycle works.",
    "Tell me about your day.",
    "What do people usually do on a Sunday?",
    "Write a few sentences about the sea.",
    "How do I clean a wooden table?",
    "Tell me about a trip to the market.",
    "What is the capital of France?",
    "Describe the room you are sitting in.",
    "How do trains run on time?",
    "Tell me about a dog and a ball.",
];

/// Other neutral user messages, for choosing settings (module scales,
/// learning rates) before a table is made; never used by the tables.
pub const TUNING_PROMPTS: [&str; 8] = [
    "How do I fold a paper plane?",
    "What is a nice present for a neighbour?",
    "Describe a small town in the morning.",
    "How does a kettle boil water?",
    "Tell me about a visit to the library.",
    "What can I do with old bread?",
    "Write a few lines about a river.",
    "How do I pack a bag for a short trip?",
];

/// A user message as the agent's prompt: the first turn of a conversation,
/// rendered the way the dialogue environment renders its observations.
pub fn prompt_observation(message: &str) -> DialogueObs {
    DialogueObs {
        history: Vec::new(),
        user_message: message.to_string(),
        turn: 0,
        max_turns: DialogueConfig::default().max_turns,
        ended: false,
    }
}
