//! Rendering an example as `USER:`/`BOT:` text in segments, and token masks
//! from the segments' token counts.
//!
//! The history turns render as `"USER: …\n"` / `"BOT: …\n"`, then the
//! `"BOT: "` prefix (counted as history), then the response text.

use super::DialogueExample;
use crate::error::TextError;
use std::ops::Range;

/// What part of a prompt a piece of text (or token) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Context the model reads.
    History,
    /// The text the model should produce.
    Response,
}

/// The prefix of the responding side's turn.
pub const BOT_PREFIX: &str = "BOT: ";

impl DialogueExample {
    /// The rendered pieces in order: one per history turn, then
    /// [`BOT_PREFIX`] (history), then the response.
    pub fn segments(&self) -> Vec<(Segment, String)> {
        let mut out: Vec<(Segment, String)> = self
            .history
            .iter()
            .map(|t| (Segment::History, format!("{}: {}\n", t.role.tag(), t.text)))
            .collect();
        out.push((Segment::History, BOT_PREFIX.to_string()));
        out.push((Segment::Response, self.response.clone()));
        out
    }

    /// The history segments joined: the prompt a model continues.
    pub fn prompt(&self) -> String {
        self.segments()
            .into_iter()
            .filter(|(s, _)| *s == Segment::History)
            .map(|(_, t)| t)
            .collect()
    }

    /// All segments joined.
    pub fn text(&self) -> String {
        self.segments().into_iter().map(|(_, t)| t).collect()
    }
}

/// Per-position masks of a sequence of `max_len` tokens; at each position
/// exactly one of `pad`, `history` and `response` is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masks {
    /// Padding (on the right).
    pub pad: Vec<bool>,
    /// History tokens.
    pub history: Vec<bool>,
    /// Response tokens.
    pub response: Vec<bool>,
    /// For each input segment, the range of its tokens that was kept.
    pub kept: Vec<Range<usize>>,
}

impl Masks {
    /// Number of non-padding positions.
    pub fn real_len(&self) -> usize {
        self.pad.iter().filter(|p| !**p).count()
    }

    /// The kept tokens of each segment in order, right-padded with `pad` to
    /// the masks' length. `segment_tokens` must have one entry per segment
    /// with the token counts the masks were built from.
    pub fn assemble<T: Clone>(
        &self,
        segment_tokens: &[Vec<T>],
        pad: T,
    ) -> Result<Vec<T>, TextError> {
        if segment_tokens.len() != self.kept.len() {
            return Err(TextError::InvalidInput(format!(
                "{} token segments for masks built from {}",
                segment_tokens.len(),
                self.kept.len()
            )));
        }
        let mut out = Vec::with_capacity(self.pad.len());
        for (i, (tokens, range)) in segment_tokens.iter().zip(&self.kept).enumerate() {
            let kept = tokens.get(range.clone()).ok_or_else(|| {
                TextError::InvalidInput(format!(
                    "segment {i} has {} tokens, fewer than the masks keep ({range:?})",
                    tokens.len()
                ))
            })?;
            out.extend_from_slice(kept);
        }
        out.resize(self.pad.len(), pad);
        Ok(out)
    }
}

/// Masks for segments of the given token counts in a sequence of `max_len`.
/// When too long, history tokens are dropped from the left first; only if
/// the response alone exceeds `max_len` is its tail cut. Shorter sequences
/// are padded on the right.
pub fn segment_masks(segment_token_lens: &[(Segment, usize)], max_len: usize) -> Masks {
    let count = |kind: Segment| -> usize {
        segment_token_lens
            .iter()
            .filter(|(s, _)| *s == kind)
            .map(|(_, n)| n)
            .sum()
    };
    let history = count(Segment::History);
    let response = count(Segment::Response);
    let excess = (history + response).saturating_sub(max_len);
    let mut drop_history = excess.min(history);
    let mut cut_tail = excess - drop_history;

    let mut kept: Vec<Range<usize>> = segment_token_lens
        .iter()
        .map(|&(kind, n)| {
            if kind == Segment::History {
                let d = drop_history.min(n);
                drop_history -= d;
                d..n
            } else {
                0..n
            }
        })
        .collect();
    for range in kept.iter_mut().rev() {
        let c = cut_tail.min(range.len());
        range.end -= c;
        cut_tail -= c;
    }

    let mut masks = Masks {
        pad: Vec::with_capacity(max_len),
        history: Vec::with_capacity(max_len),
        response: Vec::with_capacity(max_len),
        kept,
    };
    for (&(kind, _), range) in segment_token_lens.iter().zip(&masks.kept) {
        for _ in range.clone() {
            masks.pad.push(false);
            masks.history.push(kind == Segment::History);
            masks.response.push(kind == Segment::Response);
        }
    }
    masks.pad.resize(max_len, true);
    masks.history.resize(max_len, false);
    masks.response.resize(max_len, false);
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogues::{Role, Turn};

    fn bits(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn masks_hand_checked() {
        use Segment::{History as H, Response as R};
        let segs = [(H, 3), (H, 2), (H, 1), (R, 4)];
        // Fits with two pads.
        let m = segment_masks(&segs, 12);
        assert_eq!(m.history, bits("111111000000"));
        assert_eq!(m.response, bits("000000111100"));
        assert_eq!(m.pad, bits("000000000011"));
        assert_eq!(m.kept, vec![0..3, 0..2, 0..1, 0..4]);
        // Two too many: the first two history tokens go.
        let m = segment_masks(&segs, 8);
        assert_eq!(m.history, bits("11110000"));
        assert_eq!(m.response, bits("00001111"));
        assert_eq!(m.pad, bits("00000000"));
        assert_eq!(m.kept, vec![2..3, 0..2, 0..1, 0..4]);
        // Dropping reaches into the second segment.
        let m = segment_masks(&segs, 6);
        assert_eq!(m.kept, vec![3..3, 1..2, 0..1, 0..4]);
        assert_eq!(m.history, bits("110000"));
        // The response alone is too long: no history, its tail cut.
        let m = segment_masks(&segs, 3);
        assert_eq!(m.kept, vec![3..3, 2..2, 1..1, 0..3]);
        assert_eq!(m.response, bits("111"));
        assert_eq!(m.history, bits("000"));
        assert_eq!(m.real_len(), 3);
        // Nothing fits in zero.
        let m = segment_masks(&segs, 0);
        assert!(m.pad.is_empty() && m.history.is_empty() && m.response.is_empty());
    }

    #[test]
    fn assemble_follows_the_masks() {
        use Segment::{History as H, Response as R};
        let tokens = vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9]];
        let lens: Vec<(Segment, usize)> = [H, H, R]
            .into_iter()
            .zip(tokens.iter().map(Vec::len))
            .collect();
        let m = segment_masks(&lens, 7);
        assert_eq!(m.assemble(&tokens, 0).ok(), Some(vec![3, 4, 5, 6, 7, 8, 9]));
        let m = segment_masks(&lens, 11);
        assert_eq!(
            m.assemble(&tokens, 0).ok(),
            Some(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
        );
        assert!(m.assemble(&tokens[..2], 0).is_err());
        assert!(m.assemble(&[vec![1], vec![4, 5], vec![6]], 0).is_err());
    }

    #[test]
    fn segments_render_user_bot() {
        let e = DialogueExample {
            dialogue_id: "d".into(),
            turn: 2,
            history: vec![
                Turn {
                    role: Role::Bot,
                    text: "Hello.".into(),
                },
                Turn {
                    role: Role::User,
                    text: "I lost my keys.".into(),
                },
            ],
            response: "Oh no, where did you last see them?".into(),
            emotion: "none".into(),
        };
        let segs = e.segments();
        assert_eq!(
            segs,
            vec![
                (Segment::History, "BOT: Hello.\n".to_string()),
                (Segment::History, "USER: I lost my keys.\n".to_string()),
                (Segment::History, "BOT: ".to_string()),
                (
                    Segment::Response,
                    "Oh no, where did you last see them?".to_string()
                ),
            ]
        );
        assert_eq!(e.prompt(), "BOT: Hello.\nUSER: I lost my keys.\nBOT: ");
        assert_eq!(
            e.text(),
            "BOT: Hello.\nUSER: I lost my keys.\nBOT: Oh no, where did you last see them?"
        );
    }
}
