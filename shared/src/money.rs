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

/// The prices of one price version: input and output, and optionally cheaper (or dearer) prices for input read
/// from and written to the provider's prompt cache, all in micro-units per million tokens. A missing cache price
/// is the input price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PriceSheet {
    pub input_per_mtok: Micros,
    pub output_per_mtok: Micros,
    #[serde(default)]
    pub cached_input_per_mtok: Option<Micros>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<Micros>,
}

/// A request's tokens by class; `prompt` and `completion` are totals that include the classes within them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenClasses {
    pub prompt: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub completion: u64,
}

impl PriceSheet {
    /// Cost of one request in micro-units: uncached input at the input price, cached and cache-write input at
    /// theirs, all output (reasoning included) at the output price; the exact sum rounded half-up once.
    pub fn cost(&self, t: TokenClasses) -> Micros {
        let cached = t.cached_input.min(t.prompt);
        let written = t.cache_write.min(t.prompt - cached);
        let plain = t.prompt - cached - written;
        let exact = i128::from(plain) * i128::from(self.input_per_mtok)
            + i128::from(cached) * i128::from(self.cached_input_per_mtok.unwrap_or(self.input_per_mtok))
            + i128::from(written) * i128::from(self.cache_write_per_mtok.unwrap_or(self.input_per_mtok))
            + i128::from(t.completion) * i128::from(self.output_per_mtok);
        let rounded = (exact + 500_000).div_euclid(1_000_000);
        Micros::try_from(rounded).unwrap_or(Micros::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_sheet_prices_each_token_class_and_rounds_once() {
        let sheet = PriceSheet {
            input_per_mtok: 3_000_000,
            output_per_mtok: 15_000_000,
            cached_input_per_mtok: Some(300_000),
            cache_write_per_mtok: Some(3_750_000),
        };
        // 100 plain * 3 + 200 cached * 0.3 + 100 written * 3.75 + 10 out * 15 = 300 + 60 + 375 + 150
        let t = TokenClasses { prompt: 400, cached_input: 200, cache_write: 100, completion: 10 };
        assert_eq!(sheet.cost(t), 885);
        let plain = PriceSheet { input_per_mtok: 3_000_000, output_per_mtok: 15_000_000, ..Default::default() };
        assert_eq!(plain.cost(t), Price { input_per_mtok: 3_000_000, output_per_mtok: 15_000_000 }.cost(400, 10));
        // Classes larger than the input cannot make it negative.
        let odd = TokenClasses { prompt: 1, cached_input: 5, cache_write: 5, completion: 0 };
        assert_eq!(sheet.cost(odd), 0);
    }

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
