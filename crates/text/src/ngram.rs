//! Hashed n-gram features of a text, the input of the emotion classifier.
//!
//! Three namespaces are hashed into one space of `2^hash_bits` buckets:
//! word unigrams, word bigrams (with start and end markers, so "i'm scared"
//! at the start of a comment differs from the middle) and character 2- to
//! 5-grams of each word padded with a boundary mark (these carry spelling
//! variants and inflections: "scared", "scary", "scaaared"). Each feature
//! also gets a sign from its hash, so collisions cancel on average instead of
//! adding up. A bucket's value is `sign * ln(1 + |signed count|)` and the
//! vector is L2-normalised, so long comments do not get larger scores.

use crate::words::words;

/// Default number of hash bits (2^18 = 262,144 buckets).
pub const DEFAULT_HASH_BITS: u32 = 18;

const NS_UNIGRAM: u8 = b'w';
const NS_BIGRAM: u8 = b'b';
const NS_CHAR: u8 = b'c';
const START: &str = "<s>";
const END: &str = "</s>";
/// Pads a word for its character n-grams; never part of a word.
const BOUNDARY: char = ' ';
const CHAR_NGRAM_SIZES: std::ops::RangeInclusive<usize> = 2..=5;

/// Sparse features of `text`: `(bucket, value)` sorted by bucket, one entry
/// per bucket, unit L2 norm (empty for a text without words). `hash_bits` is
/// clamped to 1..=32.
pub fn features(text: &str, hash_bits: u32) -> Vec<(u32, f32)> {
    let bits = hash_bits.clamp(1, 32);
    let mask = ((1u64 << bits) - 1) as u32;
    let ws = words(text);
    let mut raw: Vec<(u32, f32)> = Vec::with_capacity(ws.len() * 24);
    let mut add = |hash: u64| {
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        raw.push((hash as u32 & mask, sign));
    };

    for w in &ws {
        add(hash_parts(NS_UNIGRAM, &[w]));
    }
    let marked: Vec<&str> = std::iter::once(START)
        .chain(ws.iter().map(String::as_str))
        .chain(std::iter::once(END))
        .collect();
    if !ws.is_empty() {
        for pair in marked.windows(2) {
            add(hash_parts(NS_BIGRAM, pair));
        }
    }
    let mut bounds: Vec<usize> = Vec::new();
    for w in &ws {
        let padded = format!("{BOUNDARY}{w}{BOUNDARY}");
        bounds.clear();
        bounds.extend(padded.char_indices().map(|(i, _)| i));
        bounds.push(padded.len());
        let n_chars = bounds.len() - 1;
        for n in CHAR_NGRAM_SIZES {
            for start in 0..(n_chars + 1).saturating_sub(n) {
                add(hash_parts(
                    NS_CHAR,
                    &[&padded[bounds[start]..bounds[start + n]]],
                ));
            }
        }
    }
    merge_and_normalise(raw)
}

/// Sums the signed counts of equal buckets, applies `sign * ln(1 + |count|)`
/// and scales to unit L2 norm.
fn merge_and_normalise(mut raw: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    raw.sort_unstable_by_key(|&(bucket, _)| bucket);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(raw.len());
    for (bucket, v) in raw {
        match merged.last_mut() {
            Some((last, sum)) if *last == bucket => *sum += v,
            _ => merged.push((bucket, v)),
        }
    }
    merged.retain(|&(_, count)| count != 0.0);
    let mut norm2 = 0.0f32;
    for (_, v) in merged.iter_mut() {
        *v = v.signum() * v.abs().ln_1p();
        norm2 += *v * *v;
    }
    if norm2 > 0.0 {
        let inv = 1.0 / norm2.sqrt();
        for (_, v) in merged.iter_mut() {
            *v *= inv;
        }
    }
    merged
}

/// FNV-1a (64-bit) of a namespace byte and parts separated by a 0 byte, then
/// a final avalanche so the low bits (bucket) and the top bit (sign) both
/// depend on every input byte.
fn hash_parts(namespace: u8, parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |byte: u8| {
        h ^= byte as u64;
        h = h.wrapping_mul(PRIME);
    };
    eat(namespace);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            eat(0);
        }
        part.bytes().for_each(&mut eat);
    }
    avalanche(h)
}

/// The 64-bit finaliser of MurmurHash3 (xor-shifts and two multiplications).
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_unit_norm() {
        let f = features("I'm so scared, so so scared!", DEFAULT_HASH_BITS);
        assert!(f.windows(2).all(|p| p[0].0 < p[1].0));
        assert!(f
            .iter()
            .all(|&(b, v)| b < 1 << DEFAULT_HASH_BITS && v != 0.0));
        let norm: f32 = f.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn empty_and_case_insensitive() {
        assert!(features("?!  ...", 18).is_empty());
        assert_eq!(features("Happy DAY", 18), features("happy day", 18));
        assert_ne!(features("happy day", 18), features("day happy", 18));
    }

    #[test]
    fn fnv_matches_reference_without_avalanche() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (reference test vector);
        // check our loop by hashing just the namespace byte 'a'.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= b'a' as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash_parts(b'a', &[]), avalanche(h));
    }
}
