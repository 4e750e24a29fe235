//! External emotional memory (seed 002, approach 4): a bounded store of
//! past emotional episodes of one conversation — a text embedding, the
//! neurochemical levels the episode left and its outcome — recalled by
//! similarity to bias the current state toward how similar moments felt.
//!
//! The store knows nothing about where embeddings come from (`emorl serve`
//! uses the frozen language model's mean read-out). Every embedding is
//! L2-normalised when stored, so similarity is the cosine. Recall takes the
//! `top_k` most similar episodes at or above `min_similarity`, weights each
//! by similarity × salience (`0.5 + 0.5·|outcome|`: strong outcomes are
//! remembered more), and blends their levels; [`EmotionalMemory::bias`]
//! moves the current levels toward that blend by `strength ×` the best
//! match's similarity — a convex combination, so the result stays in [0, 1].
//! When full, the oldest episode is forgotten.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::neuro::Neurochemistry;

/// Settings of an [`EmotionalMemory`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Most episodes kept (the oldest goes first).
    pub capacity: usize,
    /// Most episodes one recall blends.
    pub top_k: usize,
    /// Least cosine similarity for an episode to be recalled.
    pub min_similarity: f64,
    /// How far a perfect match moves the state toward the recalled levels (in [0, 1]).
    pub strength: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacity: 64,
            top_k: 4,
            min_similarity: 0.3,
            strength: 0.5,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: &str| Err(CoreError::InvalidConfig(format!("memory: {m}")));
        if self.capacity == 0 || self.capacity > 100_000 {
            return bad("capacity must be in 1..=100000");
        }
        if self.top_k == 0 {
            return bad("top_k must be > 0");
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return bad("min_similarity must be in [-1, 1]");
        }
        if !(0.0..=1.0).contains(&self.strength) {
            return bad("strength must be in [0, 1]");
        }
        Ok(())
    }
}

/// One remembered moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Unit-length text embedding.
    pub embedding: Vec<f32>,
    /// The levels the episode left.
    pub levels: [f64; 4],
    /// How it turned out, in [−1, 1].
    pub outcome: f64,
    /// Its number among all episodes ever stored (0-based).
    pub index: u64,
}

/// What one recall found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// `(episode index, cosine similarity)` of the episodes blended, best first.
    pub matches: Vec<(u64, f64)>,
    /// Their blended levels (`None`: nothing similar enough).
    pub levels: Option<[f64; 4]>,
    /// How far the state was moved toward them (0 when nothing matched).
    pub mix: f64,
}

/// A bounded, persistent store of emotional episodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmotionalMemory {
    episodes: VecDeque<Episode>,
    /// Episodes ever stored.
    stored: u64,
}

fn unit(v: &[f32]) -> Result<Vec<f32>, CoreError> {
    if v.is_empty() {
        return Err(CoreError::InvalidConfig("memory: empty embedding".into()));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(CoreError::InvalidConfig(
            "memory: embedding has a non-finite entry".into(),
        ));
    }
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Err(CoreError::InvalidConfig("memory: zero embedding".into()));
    }
    Ok(v.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

impl EmotionalMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Episodes held now.
    pub fn len(&self) -> usize {
        self.episodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }
    /// Episodes ever stored (forgotten ones included).
    pub fn stored(&self) -> u64 {
        self.stored
    }
    /// The episodes held, oldest first.
    pub fn episodes(&self) -> impl Iterator<Item = &Episode> {
        self.episodes.iter()
    }
    /// Embedding width (`None` while empty).
    pub fn dim(&self) -> Option<usize> {
        self.episodes.front().map(|e| e.embedding.len())
    }

    /// Stores an episode (forgetting the oldest past `cfg.capacity`). The
    /// embedding must be finite, nonzero and as wide as the stored ones;
    /// `outcome` is clamped to [−1, 1] (NaN counts as 0).
    pub fn add(
        &mut self,
        cfg: &MemoryConfig,
        embedding: &[f32],
        state: &Neurochemistry,
        outcome: f64,
    ) -> Result<(), CoreError> {
        if let Some(d) = self.dim() {
            if d != embedding.len() {
                return Err(CoreError::InvalidConfig(format!(
                    "memory: embedding has {} entries, the stored ones {d}",
                    embedding.len()
                )));
            }
        }
        let embedding = unit(embedding)?;
        let outcome = if outcome.is_nan() {
            0.0
        } else {
            outcome.clamp(-1.0, 1.0)
        };
        self.episodes.push_back(Episode {
            embedding,
            levels: state.levels,
            outcome,
            index: self.stored,
        });
        self.stored += 1;
        while self.episodes.len() > cfg.capacity {
            self.episodes.pop_front();
        }
        Ok(())
    }

    /// The episodes most similar to `query` and their blended levels.
    pub fn recall(&self, cfg: &MemoryConfig, query: &[f32]) -> Result<Recall, CoreError> {
        let Some(d) = self.dim() else {
            return Ok(Recall::default());
        };
        if query.len() != d {
            return Err(CoreError::InvalidConfig(format!(
                "memory: query has {} entries, the stored ones {d}",
                query.len()
            )));
        }
        let q = unit(query)?;
        let mut scored: Vec<(f64, &Episode)> = self
            .episodes
            .iter()
            .map(|e| {
                let s: f64 = e
                    .embedding
                    .iter()
                    .zip(&q)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                (s.clamp(-1.0, 1.0), e)
            })
            .filter(|(s, _)| *s >= cfg.min_similarity)
            .collect();
        // Best first; ties to the newer episode.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.index.cmp(&a.1.index)));
        scored.truncate(cfg.top_k);
        let Some(&(best, _)) = scored.first() else {
            return Ok(Recall::default());
        };
        let mut blend = [0.0; 4];
        let mut total = 0.0;
        for (s, e) in &scored {
            // Similarities below 0 are allowed by min_similarity < 0; weight by
            // how close to the bottom of the allowed range they are not.
            let w = (s - cfg.min_similarity.min(0.0)).max(1e-12) * (0.5 + 0.5 * e.outcome.abs());
            for (b, l) in blend.iter_mut().zip(e.levels) {
                *b += w * l;
            }
            total += w;
        }
        for b in &mut blend {
            *b = (*b / total).clamp(0.0, 1.0);
        }
        Ok(Recall {
            matches: scored.iter().map(|(s, e)| (e.index, *s)).collect(),
            levels: Some(blend),
            mix: (cfg.strength * best.max(0.0)).clamp(0.0, 1.0),
        })
    }

    /// `current` moved toward the levels recalled for `query` (unchanged
    /// when nothing is similar enough), and the recall.
    pub fn bias(
        &self,
        cfg: &MemoryConfig,
        current: &Neurochemistry,
        query: &[f32],
    ) -> Result<(Neurochemistry, Recall), CoreError> {
        let recall = self.recall(cfg, query)?;
        let Some(levels) = recall.levels else {
            return Ok((*current, recall));
        };
        let m = recall.mix;
        let mut out = *current;
        for (o, r) in out.levels.iter_mut().zip(levels) {
            *o = ((1.0 - m) * *o + m * r).clamp(0.0, 1.0);
        }
        Ok((out, recall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuro::NeuroConfig;

    fn state(l: [f64; 4]) -> Neurochemistry {
        Neurochemistry::new(l).unwrap()
    }

    #[test]
    fn bounded_oldest_forgotten() {
        let cfg = MemoryConfig {
            capacity: 3,
            ..MemoryConfig::default()
        };
        let mut m = EmotionalMemory::new();
        for i in 0..5 {
            m.add(&cfg, &[1.0, i as f32], &state([0.5; 4]), 0.0)
                .unwrap();
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.stored(), 5);
        let kept: Vec<u64> = m.episodes().map(|e| e.index).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        for e in m.episodes() {
            let n: f32 = e.embedding.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn recall_picks_the_similar_and_biases_toward_it() {
        let cfg = MemoryConfig::default();
        let mut m = EmotionalMemory::new();
        let scared = state([0.3, 0.4, 0.9, 0.2]);
        let happy = state([0.8, 0.8, 0.1, 0.7]);
        m.add(&cfg, &[1.0, 0.0, 0.0], &scared, -1.0).unwrap();
        m.add(&cfg, &[0.0, 1.0, 0.0], &happy, 1.0).unwrap();
        let now = Neurochemistry::at_baseline(&NeuroConfig::default());
        let (b, r) = m.bias(&cfg, &now, &[2.0, 0.1, 0.0]).unwrap();
        assert_eq!(r.matches.len(), 1, "only the first is similar enough");
        assert_eq!(r.matches[0].0, 0);
        assert_eq!(r.levels, Some(scared.levels));
        assert!(b.cortisol() > now.cortisol());
        assert!(r.mix > 0.45 && r.mix <= 0.5);
        // Halfway between both: blends both, the happy one not outweighed.
        let r = m.recall(&cfg, &[1.0, 1.0, 0.0]).unwrap();
        assert_eq!(r.matches.len(), 2);
        let l = r.levels.unwrap();
        assert!(l[2] > 0.1 && l[2] < 0.9);
        // Nothing similar: unchanged.
        let (b, r) = m.bias(&cfg, &now, &[0.0, 0.0, 1.0]).unwrap();
        assert_eq!(b, now);
        assert_eq!(r.mix, 0.0);
        assert!(r.levels.is_none());
    }

    #[test]
    fn salient_outcomes_weigh_more() {
        let cfg = MemoryConfig::default();
        let mut m = EmotionalMemory::new();
        m.add(&cfg, &[1.0, 0.0], &state([0.0; 4]), 0.0).unwrap();
        m.add(&cfg, &[1.0, 0.0], &state([1.0; 4]), -1.0).unwrap();
        let l = m.recall(&cfg, &[1.0, 0.0]).unwrap().levels.unwrap();
        assert!((l[0] - 2.0 / 3.0).abs() < 1e-9, "{l:?}");
    }

    #[test]
    fn biased_state_stays_in_range_under_random_input() {
        let cfg = MemoryConfig {
            capacity: 8,
            min_similarity: -1.0,
            strength: 1.0,
            ..MemoryConfig::default()
        };
        let mut rng = crate::rng::EmoRng::new(crate::rng::RngKind::Fast, 3);
        let mut m = EmotionalMemory::new();
        for _ in 0..200 {
            let e: Vec<f32> = (0..5).map(|_| rng.random() as f32 - 0.5).collect();
            let l = [rng.random(), rng.random(), rng.random(), rng.random()];
            m.add(&cfg, &e, &state(l), rng.random() * 4.0 - 2.0)
                .unwrap();
            let q: Vec<f32> = (0..5).map(|_| rng.random() as f32 - 0.5).collect();
            let (b, r) = m.bias(&cfg, &state([0.5; 4]), &q).unwrap();
            assert!(b.levels.iter().all(|x| (0.0..=1.0).contains(x)));
            assert!((0.0..=1.0).contains(&r.mix));
            assert!(r.matches.len() <= cfg.top_k);
        }
        assert!(m.len() <= 8);
    }

    #[test]
    fn bad_input_refused_and_nothing_stored() {
        let cfg = MemoryConfig::default();
        let mut m = EmotionalMemory::new();
        let s = state([0.5; 4]);
        assert!(m.add(&cfg, &[], &s, 0.0).is_err());
        assert!(m.add(&cfg, &[0.0, 0.0], &s, 0.0).is_err());
        assert!(m.add(&cfg, &[f32::NAN, 1.0], &s, 0.0).is_err());
        assert!(m.is_empty());
        m.add(&cfg, &[1.0, 0.0], &s, f64::NAN).unwrap();
        assert_eq!(m.episodes().next().unwrap().outcome, 0.0);
        assert!(m.add(&cfg, &[1.0, 0.0, 0.0], &s, 0.0).is_err());
        assert!(m.recall(&cfg, &[1.0]).is_err());
        assert_eq!(m.len(), 1);
        for bad in [
            MemoryConfig {
                capacity: 0,
                ..MemoryConfig::default()
            },
            MemoryConfig {
                strength: 1.5,
                ..MemoryConfig::default()
            },
            MemoryConfig {
                min_similarity: f64::NAN,
                ..MemoryConfig::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        // Round trip through JSON (how sessions persist it).
        let back: EmotionalMemory =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
