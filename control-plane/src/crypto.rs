//! Encryption at rest of provider credentials: AES-256-GCM with a random 96-bit nonce per value, stored as
//! `base64(nonce || ciphertext+tag)`. The key comes from configuration and never touches the database.
//!
//! Key rotation: a cipher may also hold the previous key, which only decrypts; `rotate-encryption-key`
//! (`domain/encryption_rotation.rs`) then re-encrypts every stored value with the current key.

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

/// The credential cipher: the current key, and during a rotation the previous one. Its `Debug` never shows a key.
#[derive(Clone)]
pub struct Cipher {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

impl Cipher {
    pub fn from_base64_key(key: &str) -> Result<Self, CryptoError> {
        Ok(Self { current: aes_key(key)?, previous: None })
    }

    /// This cipher, also able to decrypt values written under `previous_key`.
    pub fn with_previous_key(self, previous_key: &str) -> Result<Self, CryptoError> {
        Ok(Self { previous: Some(aes_key(previous_key)?), ..self })
    }

    /// Whether `stored` was written under the current key (`false`: the previous key, or neither).
    pub fn is_current(&self, stored: &str) -> bool {
        open(&self.current, stored).is_ok()
    }

    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let ciphertext =
            self.current.encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes()).map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(BASE64.encode(out))
    }

    /// Decrypts with the current key, else with the previous one.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        open(&self.current, stored).or_else(|e| match &self.previous {
            Some(previous) => open(previous, stored),
            None => Err(e),
        })
    }
}

fn aes_key(key: &str) -> Result<Aes256Gcm, CryptoError> {
    let bytes = BASE64.decode(key.trim()).map_err(|_| CryptoError::Key)?;
    if bytes.len() != 32 {
        return Err(CryptoError::Key);
    }
    Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::Key)
}

fn open(key: &Aes256Gcm, stored: &str) -> Result<String, CryptoError> {
    let bytes = BASE64.decode(stored).map_err(|_| CryptoError::Decrypt)?;
    if bytes.len() < NONCE_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let plaintext = key.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| CryptoError::Decrypt)?;
    String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
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
    fn the_previous_key_still_decrypts_during_a_rotation() {
        let old = Cipher::from_base64_key(&key(7)).unwrap();
        let ct = old.encrypt("secret").unwrap();
        let rotating = Cipher::from_base64_key(&key(8)).unwrap().with_previous_key(&key(7)).unwrap();
        assert_eq!(rotating.decrypt(&ct).unwrap(), "secret");
        assert!(!rotating.is_current(&ct));
        let fresh = rotating.encrypt("secret").unwrap();
        assert!(rotating.is_current(&fresh));
        assert_eq!(old.decrypt(&fresh), Err(CryptoError::Decrypt), "new values use the new key");
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert_eq!(Cipher::from_base64_key(&BASE64.encode([1u8; 16])).err(), Some(CryptoError::Key));
        assert_eq!(Cipher::from_base64_key("not base64!").err(), Some(CryptoError::Key));
    }
}
