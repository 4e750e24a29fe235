//! Random-number generators.
//!
//! Two generators share one interface: [`NumpyRng`] reproduces numpy's legacy
//! `RandomState` (MT19937 plus numpy's legacy draw algorithms) bit for bit, so
//! upstream experiments can be ported exactly; [`FastRng`] (xoshiro256++) is
//! emorl's own, for runs that only need the same distributions.
//!
//! Experiments share one stream between agent and environment (numpy's global
//! state upstream), so generators travel as an [`RngHandle`]: a cheap, clonable
//! handle to one generator.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;

/// Which generator an experiment uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RngKind {
    /// numpy legacy `RandomState` (MT19937), bit-exact with upstream Python.
    #[default]
    Numpy,
    /// emorl's xoshiro256++ generator.
    Fast,
}

impl FromStr for RngKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "numpy" => Ok(RngKind::Numpy),
            "fast" => Ok(RngKind::Fast),
            other => Err(format!(
                "unknown rng '{other}' (expected 'numpy' or 'fast')"
            )),
        }
    }
}

impl std::fmt::Display for RngKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RngKind::Numpy => "numpy",
            RngKind::Fast => "fast",
        })
    }
}

const MT_N: usize = 624;
const MT_M: usize = 397;

/// MT19937 with numpy's legacy seeding and draw algorithms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumpyRng {
    mt: Vec<u32>,
    pos: usize,
    gauss: Option<f64>,
}

impl NumpyRng {
    /// `np.random.seed(seed)` for an integer seed (Knuth-style `init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut mt = vec![0u32; MT_N];
        mt[0] = seed;
        for i in 1..MT_N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        NumpyRng {
            mt,
            pos: MT_N,
            gauss: None,
        }
    }

    #[cold]
    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        let mix = |word: u32, next: u32, far: u32| {
            let y = (word & UPPER) | (next & LOWER);
            far ^ (y >> 1) ^ if y & 1 == 1 { MATRIX_A } else { 0 }
        };
        let mt = &mut self.mt;
        // The reference's three ranges: no `% MT_N` per word, so they vectorise.
        for i in 0..MT_N - MT_M {
            mt[i] = mix(mt[i], mt[i + 1], mt[i + MT_M]);
        }
        for i in MT_N - MT_M..MT_N - 1 {
            mt[i] = mix(mt[i], mt[i + 1], mt[i + MT_M - MT_N]);
        }
        mt[MT_N - 1] = mix(mt[MT_N - 1], mt[0], mt[MT_M - 1]);
        self.pos = 0;
    }

    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= MT_N {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// xoshiro256++ seeded through splitmix64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FastRng {
    s: [u64; 4],
    gauss: Option<f64>,
}

impl FastRng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        FastRng {
            s: [next(), next(), next(), next()],
            gauss: None,
        }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

/// One generator of either kind. All draws an experiment makes go through here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EmoRng {
    Numpy(NumpyRng),
    Fast(FastRng),
}

impl EmoRng {
    pub fn new(kind: RngKind, seed: u64) -> Self {
        match kind {
            // numpy accepts seeds in [0, 2^32); larger seeds are folded.
            RngKind::Numpy => EmoRng::Numpy(NumpyRng::new((seed ^ (seed >> 32)) as u32)),
            RngKind::Fast => EmoRng::Fast(FastRng::new(seed)),
        }
    }

    pub fn kind(&self) -> RngKind {
        match self {
            EmoRng::Numpy(_) => RngKind::Numpy,
            EmoRng::Fast(_) => RngKind::Fast,
        }
    }

    /// Reseed in place (`np.random.seed(seed)`).
    pub fn reseed(&mut self, seed: u64) {
        *self = EmoRng::new(self.kind(), seed);
    }

    /// Uniform double in [0, 1) (numpy `random()`: 53 bits from two 32-bit words).
    #[inline]
    pub fn random(&mut self) -> f64 {
        match self {
            EmoRng::Numpy(r) => {
                let a = (r.next_u32() >> 5) as f64;
                let b = (r.next_u32() >> 6) as f64;
                (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
            }
            EmoRng::Fast(r) => (r.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0),
        }
    }

    /// Uniform integer in `0..=max` (numpy's masked rejection `random_interval`).
    #[inline]
    pub fn bounded(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        match self {
            EmoRng::Numpy(r) => {
                if max <= u32::MAX as u64 {
                    loop {
                        let v = (r.next_u32() as u64) & mask;
                        if v <= max {
                            return v;
                        }
                    }
                } else {
                    loop {
                        let hi = r.next_u32() as u64;
                        let lo = r.next_u32() as u64;
                        let v = ((hi << 32) | lo) & mask;
                        if v <= max {
                            return v;
                        }
                    }
                }
            }
            EmoRng::Fast(r) => loop {
                let v = r.next_u64() & mask;
                if v <= max {
                    return v;
                }
            },
        }
    }

    /// Uniform integer in `0..n` (numpy `randint(n)`, legacy masked rejection).
    #[inline]
    pub fn randint(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "randint needs n > 0");
        self.bounded(n.saturating_sub(1) as u64) as usize
    }

    /// Standard normal (numpy legacy polar Box–Muller with one cached value).
    pub fn standard_normal(&mut self) -> f64 {
        let cached = match self {
            EmoRng::Numpy(r) => r.gauss.take(),
            EmoRng::Fast(r) => r.gauss.take(),
        };
        if let Some(g) = cached {
            return g;
        }
        let (x1, x2, r2) = loop {
            let x1 = 2.0 * self.random() - 1.0;
            let x2 = 2.0 * self.random() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                break (x1, x2, r2);
            }
        };
        let f = (-2.0 * r2.ln() / r2).sqrt();
        match self {
            EmoRng::Numpy(r) => r.gauss = Some(f * x1),
            EmoRng::Fast(r) => r.gauss = Some(f * x1),
        }
        f * x2
    }

    /// In-place Fisher–Yates from the end (numpy legacy `shuffle` of a 1-D array).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.bounded(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `choice(len(p), p=p)` (numpy legacy, one draw): the running sum of
    /// `p` left to right, divided by its last entry, and the first index
    /// whose cumulative value exceeds one `random()`. Zero-probability
    /// entries are never chosen. `p` must be non-empty with a positive sum.
    pub fn choice_weighted(&mut self, p: &[f64]) -> usize {
        let mut cdf = Vec::with_capacity(p.len());
        let mut acc = 0.0;
        for &x in p {
            acc += x;
            cdf.push(acc);
        }
        let total = cdf.last().copied().unwrap_or(1.0);
        for c in &mut cdf {
            *c /= total;
        }
        let u = self.random();
        cdf.iter()
            .take_while(|&&c| c <= u)
            .count()
            .min(p.len().saturating_sub(1))
    }

    /// `choice(n, k, replace=False)`: numpy's legacy path permutes all of `0..n`.
    pub fn choice_without_replacement(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        self.shuffle(&mut idx);
        idx.truncate(k.min(n));
        idx
    }
}

/// A shared handle to one generator (numpy's global stream, per worker).
#[derive(Clone, Debug)]
pub struct RngHandle(Rc<RefCell<EmoRng>>);

impl RngHandle {
    pub fn new(kind: RngKind, seed: u64) -> Self {
        RngHandle(Rc::new(RefCell::new(EmoRng::new(kind, seed))))
    }
    pub fn from_rng(rng: EmoRng) -> Self {
        RngHandle(Rc::new(RefCell::new(rng)))
    }
    pub fn kind(&self) -> RngKind {
        self.0.borrow().kind()
    }
    pub fn reseed(&self, seed: u64) {
        self.0.borrow_mut().reseed(seed)
    }
    #[inline]
    pub fn random(&self) -> f64 {
        self.0.borrow_mut().random()
    }
    #[inline]
    pub fn randint(&self, n: usize) -> usize {
        self.0.borrow_mut().randint(n)
    }
    pub fn standard_normal(&self) -> f64 {
        self.0.borrow_mut().standard_normal()
    }
    pub fn shuffle<T>(&self, items: &mut [T]) {
        self.0.borrow_mut().shuffle(items)
    }
    pub fn choice_without_replacement(&self, n: usize, k: usize) -> Vec<usize> {
        self.0.borrow_mut().choice_without_replacement(n, k)
    }
    pub fn choice_weighted(&self, p: &[f64]) -> usize {
        self.0.borrow_mut().choice_weighted(p)
    }
    /// A copy of the generator's current state.
    pub fn snapshot(&self) -> EmoRng {
        self.0.borrow().clone()
    }
    /// Runs `f` with exclusive access to the generator.
    pub fn with<R>(&self, f: impl FnOnce(&mut EmoRng) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_matches_numpy_legacy() {
        // numpy: seed(123); choice(4, p=...) alternating the two p below
        // twelve times, then randint(4).
        let mut r = EmoRng::new(RngKind::Numpy, 123);
        let got: Vec<usize> = (0..12)
            .map(|i| {
                let p = if i % 2 == 0 {
                    [0.5, 0.0, 0.25, 0.25]
                } else {
                    [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0]
                };
                r.choice_weighted(&p)
            })
            .collect();
        assert_eq!(got, vec![2, 0, 0, 1, 2, 1, 3, 3, 0, 1, 0, 3]);
        assert_eq!(r.randint(4), 3);
    }

    #[test]
    fn mt19937_matches_reference_first_outputs() {
        // init_genrand(5489) is the reference MT19937 default seed; its first output is
        // 3499211612 (from the original Matsumoto–Nishimura mt19937ar.c test vector).
        let mut r = NumpyRng::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
    }

    #[test]
    fn numpy_seed0_random_matches_numpy() {
        // np.random.seed(0); np.random.random() == 0.5488135039273248
        let mut r = EmoRng::new(RngKind::Numpy, 0);
        assert_eq!(r.random(), 0.548_813_503_927_324_8);
        assert_eq!(r.random(), 0.715_189_366_372_419_5);
    }

    #[test]
    fn fast_rng_is_uniform_enough() {
        let mut r = EmoRng::new(RngKind::Fast, 7);
        let n = 100_000;
        let mean: f64 = (0..n).map(|_| r.random()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[r.randint(4)] += 1;
        }
        for c in counts {
            assert!((c as f64 / n as f64 - 0.25).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = EmoRng::new(RngKind::Numpy, 3);
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn handle_shares_one_stream() {
        let a = RngHandle::new(RngKind::Numpy, 0);
        let b = a.clone();
        let x = a.random();
        let y = b.random();
        let mut fresh = EmoRng::new(RngKind::Numpy, 0);
        assert_eq!(x, fresh.random());
        assert_eq!(y, fresh.random());
    }
}
