//! CSRF tokens: a random value bound to the session (or, before login, to a cookie of its own) that every
//! state-changing form must send back; compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use subtle::ConstantTimeEq as _;

/// 256 random bits, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the presented token is the expected one. An empty expected token matches nothing.
pub fn matches(expected: &str, presented: &str) -> bool {
    !expected.is_empty()
        && expected.len() == presented.len()
        && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let t = new_token();
        assert!(matches(&t, &t));
        assert!(!matches(&t, &new_token()));
        assert!(!matches(&t, ""));
        assert!(!matches("", ""));
    }
}
