//! Fuzzes the GGUF header/metadata parser and the metadata consumers built
//! on it (tokenizer and Llama configuration). Any input must give `Ok` or
//! `Err`, never a panic, and an accepted header must only point inside the
//! input.
#![no_main]

use emorl_lm::gguf::{GgufFile, GgufHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = GgufHeader::parse(data) else {
        return;
    };
    assert!((1..=3).contains(&h.version));
    assert!(h.alignment.is_power_of_two());
    for t in &h.tensors {
        let end = h.data_offset + t.offset + t.size;
        assert!(end <= data.len() as u64, "tensor {} outside the input", t.name);
    }
    if let Ok(g) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") {
        let _ = emorl_lm::llama::LlamaConfig::from_gguf(&g);
        let _ = emorl_lm::Tokenizer::from_gguf(&g);
        for t in g.tensor_infos() {
            if t.numel() <= 1 << 16 {
                let _ = g.dequantize(&t.name);
            }
        }
    }
});
