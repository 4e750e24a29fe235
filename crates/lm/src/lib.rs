//! emorl-lm: the frozen language-model engine of emorl, on libtorch (`tch`).
//!
//! * [`gguf`]: GGUF v1–v3 parsing and dequantisation ([`quant`]).
//! * [`tokenizer`]: tokenizers built from GGUF metadata or `tokenizer.json`,
//!   and chat templates (ChatML, Llama 2, Llama 3, Zephyr, Gemma).
//! * [`llama`] and [`gpt2`]: the architectures (from GGUF or Hugging Face
//!   directories), with KV caches and hook points.
//! * [`linear`]: frozen linear layers with int8/int4 weight-only copies for
//!   decoding.
//! * [`Model`]: loading, forward passes and batched generation.
//! * [`hooks`]: prefix keys/values, residual adapters, steering vectors,
//!   hidden-state read-out and logits processors for attached modules.
//!
//! ```no_run
//! use emorl_lm::{DType, GenerateOptions, Model};
//! let mut model = Model::load_default(DType::F32)?;
//! let opts = GenerateOptions { chat: true, max_new_tokens: 32, ..Default::default() };
//! let out = model.generate(&["What is the capital of France?"], &opts, None)?;
//! println!("{}", out[0].text);
//! # Ok::<(), emorl_lm::LmError>(())
//! ```

/// Defines `$name`, which calls `$body` (an `#[inline(always)]` function of
/// plain loops) compiled for AVX-512 where the CPU has it, so that LLVM
/// runs its loops sixteen lanes wide, and as it is elsewhere. The same
/// operations either way, so the same bits (Rust never fuses a multiply
/// and an add on its own).
macro_rules! avx512_or_plain {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? = $body:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just here).
                    return unsafe { wide($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

pub mod alloc;
pub mod common;
pub mod config;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod hooks;
pub mod host;
pub mod linear;
pub mod llama;
pub mod model;
pub mod qmatmul;
pub mod quant;
pub mod tokenizer;
pub mod weights;
mod workers;

pub use alloc::keep_freed_memory;
pub use common::{ForwardOutput, LogitsScope};
pub use error::{LmError, Result};
pub use generate::{
    FinishReason, GenerateOptions, Generation, GenerationTiming, Sampling, TokenEvent,
};
pub use hooks::{
    response_start, HookSite, Hooks, LogitBias, LogitsProcessor, QkvDelta, ResidualAdapter,
};
pub use host::HostDecode;
pub use linear::{PackPlan, Packing};
pub use model::{cache_dir, default_model_path, Architecture, DType, Model};
pub use tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
