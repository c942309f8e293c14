//! Money is integer micro-units of the deployment currency (1 USD = 1_000_000). Prices are micro-units per
//! million tokens, so a price like $0.15 / 1M tokens is exact (150_000).
//!
//! Rounding rule, stated once: the cost of one request is the exact product rounded half-up to a whole micro-unit.

use serde::{Deserialize, Serialize};

/// An amount of money in micro-units of the deployment currency.
pub type Micros = i64;

/// Per-token prices of a model, in micro-units per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: Micros,
    pub output_per_mtok: Micros,
}

impl Price {
    /// Cost of one request in micro-units, rounded half-up. Saturates instead of overflowing.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Micros {
        let exact = i128::from(prompt_tokens) * i128::from(self.input_per_mtok)
            + i128::from(completion_tokens) * i128::from(self.output_per_mtok);
        let rounded = (exact + 500_000).div_euclid(1_000_000);
        Micros::try_from(rounded).unwrap_or(Micros::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_and_rounds_half_up() {
        let p = Price { input_per_mtok: 2_500_000, output_per_mtok: 10_000_000 };
        // 1000 * 2.5 + 500 * 10 = 7500 micro-units
        assert_eq!(p.cost(1000, 500), 7_500);
        let tiny = Price { input_per_mtok: 150_000, output_per_mtok: 600_000 };
        // 3 tokens * 0.15 = 0.45 micro -> 0; 4 * 0.15 = 0.6 -> 1
        assert_eq!(tiny.cost(3, 0), 0);
        assert_eq!(tiny.cost(4, 0), 1);
        // exactly half rounds up
        let half = Price { input_per_mtok: 500_000, output_per_mtok: 0 };
        assert_eq!(half.cost(1, 0), 1);
        assert_eq!(Price::default().cost(1_000_000, 1_000_000), 0);
    }
}
