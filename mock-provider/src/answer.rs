//! The deterministic answer rules: completion tokens, word counts, usage and embedding vectors.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Completion token `i`, whose text is `tok{i} `.
#[derive(Clone, Copy)]
pub(crate) struct Token(pub(crate) usize);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tok{} ", self.0)
    }
}

/// The whole completion: tokens `0..chunks` concatenated.
pub(crate) fn completion_text(chunks: usize) -> String {
    // "tokNNN " is at most 8 bytes for the token counts tests and benchmarks use.
    let mut text = String::with_capacity(chunks.saturating_mul(8));
    for i in 0..chunks {
        // Writing into a String cannot fail.
        let _ = write!(text, "{}", Token(i));
    }
    text
}

/// The mock's tokenizer: one token per whitespace-separated word.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// A unit-length 8-dimensional vector from the input's bytes: byte `k` adds to component `k % 8`. Components
/// start at 1 so that the empty string still has a direction.
pub(crate) fn embedding(text: &str) -> [f32; 8] {
    let mut sums = [1.0_f32; 8];
    for (k, byte) in text.bytes().enumerate() {
        sums[k % 8] += f32::from(byte);
    }
    let norm = sums.iter().map(|v| v * v).sum::<f32>().sqrt();
    sums.map(|v| v / norm)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_the_concatenated_tokens() {
        assert_eq!(completion_text(3), "tok0 tok1 tok2 ");
        assert_eq!(completion_text(0), "");
    }

    #[test]
    fn words_split_on_any_whitespace() {
        assert_eq!(words("  one\ttwo\nthree  "), 3);
        assert_eq!(words(""), 0);
    }

    #[test]
    fn embeddings_are_unit_length_and_input_dependent() {
        let a = embedding("hello");
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(a, embedding("hello"));
        assert_ne!(a, embedding("world"));
        assert!(embedding("").iter().all(|v| v.is_finite()));
    }
}
