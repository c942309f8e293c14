//! Encryption at rest of provider credentials: AES-256-GCM with a random 96-bit nonce per value, stored as
//! `base64(nonce || ciphertext+tag)`. The key comes from configuration and never touches the database.

use std::fmt;

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng as _;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the encryption key must be base64 of exactly 32 bytes")]
    Key,
    #[error("encryption failed")]
    Encrypt,
    #[error("a stored credential cannot be decrypted (wrong encryption key or corrupted value)")]
    Decrypt,
}

/// The credential cipher. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

impl Cipher {
    pub fn from_base64_key(key: &str) -> Result<Self, CryptoError> {
        let bytes = BASE64.decode(key.trim()).map_err(|_| CryptoError::Key)?;
        if bytes.len() != 32 {
            return Err(CryptoError::Key);
        }
        Aes256Gcm::new_from_slice(&bytes).map(Self).map_err(|_| CryptoError::Key)
    }

    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let ciphertext =
            self.0.encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes()).map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(BASE64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let bytes = BASE64.decode(stored).map_err(|_| CryptoError::Decrypt)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plaintext = self.0.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        BASE64.encode([byte; 32])
    }

    #[test]
    fn round_trips_with_a_fresh_nonce_each_time() {
        let c = Cipher::from_base64_key(&key(7)).unwrap();
        let a = c.encrypt("sk-upstream").unwrap();
        let b = c.encrypt("sk-upstream").unwrap();
        assert_ne!(a, b);
        assert!(!a.contains("sk-upstream"));
        assert_eq!(c.decrypt(&a).unwrap(), "sk-upstream");
    }

    #[test]
    fn a_wrong_key_or_tampering_is_detected() {
        let c = Cipher::from_base64_key(&key(7)).unwrap();
        let other = Cipher::from_base64_key(&key(8)).unwrap();
        let ct = c.encrypt("secret").unwrap();
        assert_eq!(other.decrypt(&ct), Err(CryptoError::Decrypt));
        let mut raw = BASE64.decode(&ct).unwrap();
        raw[NONCE_LEN] ^= 1;
        assert_eq!(c.decrypt(&BASE64.encode(raw)), Err(CryptoError::Decrypt));
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert_eq!(Cipher::from_base64_key(&BASE64.encode([1u8; 16])).err(), Some(CryptoError::Key));
        assert_eq!(Cipher::from_base64_key("not base64!").err(), Some(CryptoError::Key));
    }
}
