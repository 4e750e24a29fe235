//! Tokenizers built with the `tokenizers` crate, from GGUF metadata
//! (sentencepiece-style vocabularies with scores, GPT-2-style byte-level BPE
//! with merges) or from a Hugging Face `tokenizer.json`, plus chat templates
//! (ChatML, Llama 2, Llama 3, Zephyr, Gemma).
//!
//! Length: about 820 lines of code: two tokenizer families (SentencePiece-
//! style and byte-level BPE, from GGUF or tokenizer.json) share the merge
//! loop, the special-token handling and the chat templates; the rest are
//! tests.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;

/// llama.cpp token types stored in `tokenizer.ggml.token_type`.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The sentencepiece word-boundary marker.
const SPM_SPACE: char = '\u{2581}';

/// Llama-3-style split pattern (also used by several other vocabularies).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2-style split pattern: like Llama 3's, with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Chat templates this crate renders natively (no Jinja engine). Each
/// variant reproduces the output of the model family's Hugging Face Jinja
/// template (rendered as transformers does, with `trim_blocks` and
/// `lstrip_blocks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`, optionally with a default
    /// system message inserted when the conversation does not start with one.
    ChatMl {
        /// The system message the model's template inserts by default.
        default_system: Option<String>,
    },
    /// Llama 2 chat: `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST]
    /// answer </s>`; a system message joins the first user turn. The prompt
    /// already ends where the answer starts, so `add_generation_prompt`
    /// adds nothing.
    Llama2 {
        /// The BOS token text (`<s>`).
        bos: String,
        /// The EOS token text (`</s>`).
        eos: String,
    },
    /// Llama 3 instruct: `<|begin_of_text|>` then, per message,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
    /// (content trimmed). Stops on `<|eot_id|>`.
    Llama3 {
        /// The BOS token text (`<|begin_of_text|>`).
        bos: String,
    },
    /// Zephyr / TinyLlama chat: `<|role|>\ncontent</s>\n` per message and
    /// `<|assistant|>\n` to open the answer.
    Zephyr {
        /// The EOS token text (`</s>`).
        eos: String,
    },
    /// Gemma instruct: `<bos>` then `<start_of_turn>role\ncontent<end_of_turn>\n`
    /// with the assistant role named `model` (content trimmed); a system
    /// message is prepended to the first user turn, as Gemma 3's template
    /// does. Stops on `<end_of_turn>`.
    Gemma {
        /// The BOS token text (`<bos>`).
        bos: String,
    },
}

impl ChatTemplate {
    /// Recognises a Jinja chat template by its markers. Returns `None` for
    /// templates this crate cannot render. Special-token texts default to
    /// the family's usual ones (see [`ChatTemplate::detect_with_tokens`]).
    pub fn detect(jinja: &str) -> Option<ChatTemplate> {
        Self::detect_with_tokens(jinja, None, None)
    }

    /// Like [`ChatTemplate::detect`], with the texts of the model's BOS and
    /// EOS tokens (what the template's `bos_token` / `eos_token` expand to).
    pub fn detect_with_tokens(
        jinja: &str,
        bos: Option<&str>,
        eos: Option<&str>,
    ) -> Option<ChatTemplate> {
        let or = |t: Option<&str>, d: &str| t.unwrap_or(d).to_string();
        if jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>") {
            return Some(Self::detect_chatml(jinja));
        }
        if jinja.contains("<|start_header_id|>") && jinja.contains("<|eot_id|>") {
            return Some(ChatTemplate::Llama3 {
                bos: or(bos, "<|begin_of_text|>"),
            });
        }
        if jinja.contains("<start_of_turn>") && jinja.contains("<end_of_turn>") {
            return Some(ChatTemplate::Gemma {
                bos: or(bos, "<bos>"),
            });
        }
        if jinja.contains("<|user|>") && jinja.contains("<|assistant|>") {
            return Some(ChatTemplate::Zephyr {
                eos: or(eos, "</s>"),
            });
        }
        if jinja.contains("[INST]") && jinja.contains("[/INST]") && jinja.contains("<<SYS>>") {
            return Some(ChatTemplate::Llama2 {
                bos: or(bos, "<s>"),
                eos: or(eos, "</s>"),
            });
        }
        None
    }

    fn detect_chatml(jinja: &str) -> ChatTemplate {
        // A literal default system message, as in SmolLM2's and Qwen's templates:
        // '<|im_start|>system\nYou are ...<|im_end|>\n'
        let marker = "<|im_start|>system\n";
        let default_system = jinja.find(marker).and_then(|i| {
            let rest = &jinja[i + marker.len()..];
            let end = rest.find("<|im_end|>")?;
            let text = &rest[..end];
            let literal = !text.contains("{{")
                && !text.contains("{%")
                && !text.contains('\'')
                && !text.contains('"')
                && !text.contains('+');
            (literal && !text.is_empty()).then(|| text.to_string())
        });
        ChatTemplate::ChatMl { default_system }
    }

    /// The token text (besides EOS) that ends an assistant turn, if the
    /// template has one.
    pub fn end_of_turn(&self) -> Option<&'static str> {
        match self {
            ChatTemplate::ChatMl { .. } => Some("<|im_end|>"),
            ChatTemplate::Llama3 { .. } => Some("<|eot_id|>"),
            ChatTemplate::Gemma { .. } => Some("<end_of_turn>"),
            ChatTemplate::Llama2 { .. } | ChatTemplate::Zephyr { .. } => None,
        }
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends
    /// with the opening of an assistant turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let Some(sys) = default_system {
                    if messages.first().map(|m| m.role != "system").unwrap_or(true) {
                        out.push_str("<|im_start|>system\n");
                        out.push_str(sys);
                        out.push_str("<|im_end|>\n");
                    }
                }
                for m in messages {
                    out.push_str("<|im_start|>");
                    out.push_str(&m.role);
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
            }
            ChatTemplate::Llama2 { bos, eos } => {
                let (system, rest) = split_system(messages);
                for (i, m) in rest.iter().enumerate() {
                    let content = match (i, system) {
                        (0, Some(sys)) => format!("<<SYS>>\n{sys}\n<</SYS>>\n\n{}", m.content),
                        _ => m.content.clone(),
                    };
                    match m.role.as_str() {
                        "user" => {
                            out.push_str(bos);
                            out.push_str("[INST] ");
                            out.push_str(content.trim());
                            out.push_str(" [/INST]");
                        }
                        "assistant" => {
                            out.push(' ');
                            out.push_str(content.trim());
                            out.push(' ');
                            out.push_str(eos);
                        }
                        _ => {}
                    }
                }
            }
            ChatTemplate::Llama3 { bos } => {
                out.push_str(bos);
                for m in messages {
                    out.push_str("<|start_header_id|>");
                    out.push_str(&m.role);
                    out.push_str("<|end_header_id|>\n\n");
                    out.push_str(m.content.trim());
                    out.push_str("<|eot_id|>");
                }
                if add_generation_prompt {
                    out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            ChatTemplate::Zephyr { eos } => {
                for m in messages {
                    if !matches!(m.role.as_str(), "user" | "system" | "assistant") {
                        continue;
                    }
                    out.push_str("<|");
                    out.push_str(&m.role);
                    out.push_str("|>\n");
                    out.push_str(&m.content);
                    out.push_str(eos);
                    out.push('\n');
                }
                if add_generation_prompt {
                    out.push_str("<|assistant|>\n");
                }
            }
            ChatTemplate::Gemma { bos } => {
                out.push_str(bos);
                let (system, rest) = split_system(messages);
                for (i, m) in rest.iter().enumerate() {
                    let role = if m.role == "assistant" {
                        "model"
                    } else {
                        &m.role
                    };
                    out.push_str("<start_of_turn>");
                    out.push_str(role);
                    out.push('\n');
                    if let (0, Some(sys)) = (i, system) {
                        out.push_str(sys);
                        out.push_str("\n\n");
                    }
                    out.push_str(m.content.trim());
                    out.push_str("<end_of_turn>\n");
                }
                if add_generation_prompt {
                    out.push_str("<start_of_turn>model\n");
                }
            }
        }
        out
    }
}

/// The leading system message's text, and the other messages.
fn split_system(messages: &[ChatMessage]) -> (Option<&str>, &[ChatMessage]) {
    match messages.split_first() {
        Some((first, rest)) if first.role == "system" => (Some(first.content.as_str()), rest),
        _ => (None, messages),
    }
}

/// A tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    stop: Vec<u32>,
    /// Whether `encode(.., true)` prepends BOS itself (GGUF-built tokenizers);
    /// tokenizers from `tokenizer.json` rely on their own post-processor.
    add_bos: bool,
    manual_specials: bool,
    chat: Option<ChatTemplate>,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("chat", &self.chat)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> LmError {
    LmError::Tokenizer(e.to_string())
}

/// Merges implied by a sentencepiece vocabulary: every split of a token into
/// two tokens of the vocabulary, best-scored result first (ties: longer left
/// piece, then longer right piece, then vocabulary order).
pub fn merges_from_scores(
    tokens: &[&str],
    scores: &[f64],
    usable: &[bool],
) -> Vec<(String, String)> {
    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| usable[*i])
        .map(|(i, t)| (*t, i))
        .collect();
    let mut cands: Vec<(f64, usize, usize, usize, usize, &str, &str)> = Vec::new();
    for (ti, tok) in tokens.iter().enumerate() {
        if !usable[ti] {
            continue;
        }
        let bounds: Vec<usize> = tok.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut local = Vec::new();
        for b in bounds {
            let (l, r) = tok.split_at(b);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                local.push((li, ri, l, r));
            }
        }
        local.sort_by_key(|&(li, ri, _, _)| (li, ri));
        for (li, ri, l, r) in local {
            cands.push((
                scores[ti],
                l.chars().count(),
                r.chars().count(),
                li,
                ri,
                l,
                r,
            ));
        }
    }
    // Stable sort: best score first, then longer pieces first.
    cands.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.1.cmp(&a.1))
            .then(b.2.cmp(&a.2))
    });
    cands
        .into_iter()
        .map(|c| (c.5.to_string(), c.6.to_string()))
        .collect()
}

fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = |regex: bool| ByteLevel::new(false, true, regex);
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let s = Split::new(
            SplitPattern::Regex(pattern.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tok_err)?;
        Ok(PreTokenizerWrapper::Sequence(PreSequence::new(vec![
            s.into(),
            byte_level(false).into(),
        ])))
    };
    Ok(match pre {
        "" | "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => byte_level(true).into(),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
            PreTokenizerWrapper::Sequence(PreSequence::new(vec![
                Digits::new(true).into(),
                byte_level(true).into(),
            ]))
        }
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "dbrx" => {
            split(LLAMA3_SPLIT)?
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => split(QWEN2_SPLIT)?,
        other => {
            return Err(LmError::Unsupported(format!(
                "GGUF pre-tokenizer `{other}` (tokenizer.ggml.pre)"
            )))
        }
    })
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let model = g.get_str("tokenizer.ggml.model")?.to_string();
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(LmError::Metadata {
                path: g.path().into(),
                key: "tokenizer.ggml.tokens".into(),
                msg: format!("vocabulary of {n} tokens"),
            });
        }
        let types = g.get_i64_array_opt("tokenizer.ggml.token_type")?;
        if let Some(t) = &types {
            if t.len() != n {
                return Err(LmError::Metadata {
                    path: g.path().into(),
                    key: "tokenizer.ggml.token_type".into(),
                    msg: format!("{} entries for {n} tokens", t.len()),
                });
            }
        }
        let ty = |i: usize| types.as_ref().map(|t| t[i]).unwrap_or(1);
        let bos = g.get_token_id_opt("tokenizer.ggml.bos_token_id", n)?;
        let eos = g.get_token_id_opt("tokenizer.ggml.eos_token_id", n)?;
        let unk = g.get_token_id_opt("tokenizer.ggml.unknown_token_id", n)?;
        let pad = g.get_token_id_opt("tokenizer.ggml.padding_token_id", n)?;
        let add_bos_meta = g.get_bool_opt("tokenizer.ggml.add_bos_token")?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();

        let mut inner;
        let add_bos;
        match model.as_str() {
            "llama" => {
                let scores = g
                    .get_f64_array_opt("tokenizer.ggml.scores")?
                    .ok_or_else(|| LmError::Metadata {
                        path: g.path().into(),
                        key: "tokenizer.ggml.scores".into(),
                        msg: "missing: a sentencepiece vocabulary needs scores".into(),
                    })?;
                if scores.len() != n {
                    return Err(LmError::Metadata {
                        path: g.path().into(),
                        key: "tokenizer.ggml.scores".into(),
                        msg: format!("{} scores for {n} tokens", scores.len()),
                    });
                }
                let usable: Vec<bool> = (0..n)
                    .map(|i| !matches!(ty(i), TOKEN_TYPE_CONTROL | 5 | 6 | 2))
                    .collect();
                let merges = match g.get("tokenizer.ggml.merges") {
                    Some(_) => parse_merges(g)?,
                    None => merges_from_scores(&tokens, &scores, &usable),
                };
                let mut b = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .fuse_unk(true)
                    .byte_fallback(true);
                if let Some(u) = unk {
                    b = b.unk_token(tokens[u as usize].to_string());
                }
                let bpe = b.build().map_err(tok_err)?;
                let add_prefix = g
                    .get_bool_opt("tokenizer.ggml.add_space_prefix")?
                    .unwrap_or(true);
                inner = tokenizers::Tokenizer::new(bpe);
                let scheme = if add_prefix {
                    PrependScheme::First
                } else {
                    PrependScheme::Never
                };
                inner.with_pre_tokenizer(Some(Metaspace::new(SPM_SPACE, scheme, false)));
                let mut dec: Vec<DecoderWrapper> = vec![
                    Replace::new(SPM_SPACE.to_string(), " ")
                        .map_err(tok_err)?
                        .into(),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ];
                if add_prefix {
                    dec.push(Strip::new(' ', 1, 0).into());
                }
                inner.with_decoder(Some(DecoderSequence::new(dec)));
                add_bos = add_bos_meta.unwrap_or(true);
            }
            "gpt2" => {
                let merges = parse_merges(g)?;
                let pre = g.get_str_opt("tokenizer.ggml.pre")?.unwrap_or("default");
                let pre = pre_tokenizer_for(pre)?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(tok_err)?;
                inner = tokenizers::Tokenizer::new(bpe);
                inner.with_pre_tokenizer(Some(pre));
                inner.with_decoder(Some(ByteLevel::default()));
                add_bos = add_bos_meta.unwrap_or(false);
            }
            other => {
                return Err(LmError::Unsupported(format!(
                    "tokenizer model `{other}` in {} (supported: llama, gpt2)",
                    g.path()
                )))
            }
        }

        let special: Vec<AddedToken> = (0..n)
            .filter(|&i| ty(i) == TOKEN_TYPE_CONTROL)
            .map(|i| AddedToken::from(tokens[i].to_string(), true).normalized(false))
            .collect();
        inner.add_special_tokens(&special);
        let user: Vec<AddedToken> = (0..n)
            .filter(|&i| ty(i) == TOKEN_TYPE_USER_DEFINED)
            .map(|i| AddedToken::from(tokens[i].to_string(), false).normalized(false))
            .collect();
        inner.add_tokens(&user);

        let tok_text = |id: Option<u32>| id.map(|i| tokens[i as usize]);
        let chat = detect_logged(
            g.get_str_opt("tokenizer.chat_template")?,
            tok_text(bos),
            tok_text(eos),
            g.path(),
        );
        let mut t = Tokenizer {
            inner,
            bos,
            eos,
            pad,
            stop: Vec::new(),
            add_bos,
            manual_specials: true,
            chat,
            vocab_size: n,
        };
        t.finish_stop_tokens();
        Ok(t)
    }

    /// Loads a Hugging Face `tokenizer.json`; special-token ids and the chat
    /// template come from `tokenizer_config.json`, `config.json` and
    /// `generation_config.json` next to it when present.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| LmError::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| LmError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
            let p = dir.join(name);
            if !p.exists() {
                return Ok(None);
            }
            let b = std::fs::read(&p).map_err(|e| LmError::io(&p, e))?;
            serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| LmError::Json {
                    path: p.clone(),
                    msg: e.to_string(),
                })
        };
        let tok_cfg = read_json("tokenizer_config.json")?;
        let cfg = read_json("config.json")?;
        let gen_cfg = read_json("generation_config.json")?;
        let vocab_size = inner.get_vocab_size(true);
        let id_of = |v: &serde_json::Value| -> Option<u32> {
            match v {
                serde_json::Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()),
                serde_json::Value::String(s) => inner.token_to_id(s),
                serde_json::Value::Object(o) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .and_then(|s| inner.token_to_id(s)),
                serde_json::Value::Array(a) => a.first().and_then(|x| x.as_u64()).map(|x| x as u32),
                _ => None,
            }
        };
        let pick = |keys: &[(&Option<serde_json::Value>, &str)]| -> Option<u32> {
            keys.iter().find_map(|(src, key)| {
                src.as_ref()
                    .and_then(|s| s.get(*key))
                    .and_then(id_of)
                    .filter(|&id| (id as usize) < vocab_size)
            })
        };
        let bos = pick(&[
            (&gen_cfg, "bos_token_id"),
            (&cfg, "bos_token_id"),
            (&tok_cfg, "bos_token"),
        ]);
        let eos = pick(&[
            (&gen_cfg, "eos_token_id"),
            (&cfg, "eos_token_id"),
            (&tok_cfg, "eos_token"),
        ]);
        let pad = pick(&[(&cfg, "pad_token_id"), (&tok_cfg, "pad_token")]);
        let mut stop = Vec::new();
        if let Some(serde_json::Value::Array(a)) =
            gen_cfg.as_ref().and_then(|g| g.get("eos_token_id"))
        {
            stop.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32));
        }
        let jinja = tok_cfg
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|c| match c {
                serde_json::Value::String(s) => Some(s.as_str()),
                // A list of named templates: use the default one.
                serde_json::Value::Array(a) => a
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str()),
                _ => None,
            });
        let bos_text = bos.and_then(|b| inner.id_to_token(b));
        let eos_text = eos.and_then(|e| inner.id_to_token(e));
        let chat = detect_logged(
            jinja,
            bos_text.as_deref(),
            eos_text.as_deref(),
            &path.display().to_string(),
        );
        let mut t = Tokenizer {
            inner,
            bos,
            eos,
            pad,
            stop,
            add_bos: false,
            manual_specials: false,
            chat,
            vocab_size,
        };
        t.finish_stop_tokens();
        Ok(t)
    }

    fn finish_stop_tokens(&mut self) {
        if let Some(e) = self.eos {
            if !self.stop.contains(&e) {
                self.stop.push(e);
            }
        }
        if let Some(end) = self.chat.as_ref().and_then(|c| c.end_of_turn()) {
            if let Some(id) = self.inner.token_to_id(end) {
                if !self.stop.contains(&id) {
                    self.stop.push(id);
                }
            }
        }
    }

    /// Encodes text. With `add_special_tokens`, BOS is prepended when the
    /// model wants it (GGUF `tokenizer.ggml.add_bos_token`, or the
    /// post-processor of a `tokenizer.json`). Special tokens written in the
    /// text (`<|im_start|>`, `<s>`, ...) are recognised.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        if self.manual_specials {
            let enc = self.inner.encode(text, false).map_err(tok_err)?;
            let mut ids = Vec::with_capacity(enc.len() + 1);
            if add_special_tokens && self.add_bos {
                if let Some(b) = self.bos {
                    ids.push(b);
                }
            }
            ids.extend_from_slice(enc.get_ids());
            Ok(ids)
        } else {
            let enc = self
                .inner
                .encode(text, add_special_tokens)
                .map_err(tok_err)?;
            Ok(enc.get_ids().to_vec())
        }
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Padding token (falls back to EOS, then 0, when the model has none).
    pub fn pad_id(&self) -> u32 {
        self.pad.or(self.eos).unwrap_or(0)
    }

    /// Tokens that end generation: EOS, and the chat template's end-of-turn
    /// token (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    /// Whether `encode(.., true)` adds BOS.
    pub fn adds_bos(&self) -> bool {
        if self.manual_specials {
            self.add_bos && self.bos.is_some()
        } else {
            // Probe the post-processor.
            match (self.bos, self.inner.encode("a", true)) {
                (Some(b), Ok(e)) => e.get_ids().first() == Some(&b),
                _ => false,
            }
        }
    }

    /// The chat template, when the model has one this crate can render.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// Replaces the chat template.
    pub fn set_chat_template(&mut self, chat: Option<ChatTemplate>) {
        self.chat = chat;
        self.finish_stop_tokens();
    }

    /// Renders a conversation with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let chat = self.chat.as_ref().ok_or_else(|| {
            LmError::Unsupported("this model has no chat template this crate can render".into())
        })?;
        Ok(chat.render(messages, add_generation_prompt))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Detects the chat template of a model, warning when it has one this crate
/// cannot render (chat prompts then fall back to the plain prompt).
fn detect_logged(
    jinja: Option<&str>,
    bos: Option<&str>,
    eos: Option<&str>,
    source: &str,
) -> Option<ChatTemplate> {
    let jinja = jinja?;
    let t = ChatTemplate::detect_with_tokens(jinja, bos, eos);
    if t.is_none() {
        tracing::warn!(
            "unrecognised chat template in {source}; chat prompts will be used as plain prompts"
        );
    }
    t
}

fn parse_merges(g: &GgufFile) -> Result<Vec<(String, String)>> {
    let merges = g.get_str_array("tokenizer.ggml.merges")?;
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| LmError::Metadata {
                    path: g.path().into(),
                    key: "tokenizer.ggml.merges".into(),
                    msg: format!("merge #{i} `{m}` is not two tokens separated by a space"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_scores() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let usable = [true; 6];
        let m = merges_from_scores(&tokens, &scores, &usable);
        // abc (score -0.5) first: splits a+bc and ab+c, longer left first.
        assert_eq!(
            m,
            vec![
                ("ab".to_string(), "c".to_string()),
                ("a".to_string(), "bc".to_string()),
                ("a".to_string(), "b".to_string()),
                ("b".to_string(), "c".to_string()),
            ]
        );
    }

    #[test]
    fn chatml_with_default_system() {
        let jinja = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let t = ChatTemplate::detect(jinja).expect("chatml");
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: Some("You are helpful".into())
            }
        );
        let s = t.render(&[ChatMessage::user("Hi")], true);
        assert_eq!(
            s,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = t.render(&[ChatMessage::system("S"), ChatMessage::user("Hi")], false);
        assert_eq!(
            s,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        assert!(ChatTemplate::detect("{{ bos_token }}[INST]").is_none());
    }

    fn conv() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi "),
            ChatMessage::assistant("Hello!"),
            ChatMessage::user("2+2?"),
        ]
    }

    #[test]
    fn llama2_rendering() {
        let t = ChatTemplate::detect(
            "{% if messages[0]['role'] == 'system' %}...'<<SYS>>\\n'...{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
        )
        .expect("llama2");
        assert_eq!(
            t,
            ChatTemplate::Llama2 {
                bos: "<s>".into(),
                eos: "</s>".into()
            }
        );
        assert_eq!(
            t.render(&conv(), true),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]"
        );
        assert_eq!(
            t.render(&[ChatMessage::user("Hi")], true),
            "<s>[INST] Hi [/INST]"
        );
    }

    #[test]
    fn llama3_rendering() {
        let t = ChatTemplate::detect_with_tokens(
            "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}",
            Some("<|begin_of_text|>"),
            Some("<|eot_id|>"),
        )
        .expect("llama3");
        assert_eq!(t.end_of_turn(), Some("<|eot_id|>"));
        assert_eq!(
            t.render(&[ChatMessage::user(" Hi ")], true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            t.render(&conv()[..2], false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        );
    }

    #[test]
    fn zephyr_rendering() {
        let t = ChatTemplate::detect(
            "{{ '<|user|>\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}",
        )
        .expect("zephyr");
        assert_eq!(t.end_of_turn(), None);
        assert_eq!(
            t.render(&conv(), true),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi </s>\n<|assistant|>\nHello!</s>\n<|user|>\n2+2?</s>\n<|assistant|>\n"
        );
    }

    #[test]
    fn gemma_rendering() {
        let t = ChatTemplate::detect("{{ bos_token }}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}")
            .expect("gemma");
        assert_eq!(
            t,
            ChatTemplate::Gemma {
                bos: "<bos>".into()
            }
        );
        assert_eq!(
            t.render(&conv(), true),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn unknown_templates_are_not_detected() {
        assert_eq!(ChatTemplate::detect("{{ messages[0]['content'] }}"), None);
        assert_eq!(
            ChatTemplate::detect("{{ '[INST] ' + m + ' [/INST]' }}"),
            None,
            "Mistral-style [INST] without <<SYS>> is not Llama 2"
        );
    }
}
