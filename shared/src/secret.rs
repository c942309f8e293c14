//! Secret formats and their hashing. API keys and operator tokens are 256-bit random strings with a readable
//! prefix; only their SHA-256 is ever stored (argon2 is for human passwords, not for high-entropy keys).

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 256 bits of entropy.
const BODY_LEN: usize = 43;
/// How many leading characters of a secret are shown to identify it.
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// Prefix of team API keys.
pub const API_KEY_PREFIX: &str = "sk-sy-";
/// Prefix of operator API tokens.
pub const OPERATOR_TOKEN_PREFIX: &str = "syop-";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretFormatError {
    #[error("the key does not start with `{0}`")]
    Prefix(&'static str),
    #[error("the key has the wrong length")]
    Length,
    #[error("the key contains characters outside [0-9A-Za-z]")]
    Alphabet,
    #[error("not a hex-encoded SHA-256")]
    Hash,
}

/// A configured secret (database URL, node token, encryption key). `Debug` and `Display` never show it; call
/// [`Secret::expose`] where it is used. Both planes' settings use this one type.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A plaintext secret of a known format. It exists only between generation and the response that shows it,
/// and between a request's header and its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new secret with the given prefix, from a cryptographically secure RNG supplied by the caller.
    pub fn generate(prefix: &'static str, rng: &mut impl rand::CryptoRng) -> Self {
        let mut s = String::with_capacity(prefix.len() + BODY_LEN);
        s.push_str(prefix);
        for _ in 0..BODY_LEN {
            let i = rng.random_range(0..ALPHABET.len());
            s.push(char::from(ALPHABET[i]));
        }
        Self(s)
    }

    /// Parses a secret of the given prefix; rejects anything of another shape before it is hashed.
    pub fn parse(prefix: &'static str, s: &str) -> Result<Self, SecretFormatError> {
        let body = s.strip_prefix(prefix).ok_or(SecretFormatError::Prefix(prefix))?;
        if body.len() != BODY_LEN {
            return Err(SecretFormatError::Length);
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SecretFormatError::Alphabet);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The leading characters shown in lists so people can tell keys apart.
    pub fn visible_prefix(&self) -> &str {
        &self.0[..VISIBLE_PREFIX_LEN.min(self.0.len())]
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.visible_prefix())
    }
}

/// SHA-256 of a secret. Serialised as lowercase hex.
///
/// It hashes as its first 8 bytes: they are already uniformly distributed, so maps keyed by it use
/// [`KeyHashState`] and skip a second hash function (SipHash over 32 bytes was most of the time spent building
/// the key maps of a 1M-key snapshot). Flooding is not a concern: entries come only from the snapshot, and a
/// caller who grinds tokens to collide in one bucket only slows down the lookups of those tokens.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.prefix());
    }
}

/// The identity [`BuildHasher`] for maps and sets keyed by [`KeyHash`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHashState;

impl BuildHasher for KeyHashState {
    type Hasher = PrefixHasher;

    fn build_hasher(&self) -> PrefixHasher {
        PrefixHasher(0)
    }
}

/// Passes a [`KeyHash`]'s prefix through unchanged; see [`KeyHashState`].
#[derive(Debug, Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Only `write_u64` is used by `KeyHash`; anything else still hashes correctly (FNV-1a).
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A set of key hashes without a second hash function.
pub type KeyHashSet = HashSet<KeyHash, KeyHashState>;

impl KeyHash {
    /// Hashes any presented string, whatever its shape: the lookup then simply finds nothing.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// The first 8 bytes as a number: the hash of this hash in maps.
    pub fn prefix(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, SecretFormatError> {
        Self::from_hex_bytes(s.as_bytes())
    }

    /// 64 hex digits, either case. Decoded with a table: this runs once per key of every snapshot a node applies.
    pub fn from_hex_bytes(s: &[u8]) -> Result<Self, SecretFormatError> {
        let Ok(pairs) = <&[u8; 64]>::try_from(s) else {
            return Err(SecretFormatError::Hash);
        };
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(pairs.chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
            bad |= hi | lo;
            *o = (hi << 4) | (lo & 0x0f);
        }
        if bad & 0x80 != 0 {
            return Err(SecretFormatError::Hash);
        }
        Ok(Self(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..8])
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        // encode_to_slice only fails on a wrong buffer length, which is fixed here.
        hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

/// The value of each hex digit; 0xff for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes the hex in place: deserialising through `String` or `Cow<str>` (which serde always makes owned) cost
/// an allocation per key in a snapshot.
impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = KeyHash;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 in hex")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<KeyHash, E> {
                KeyHash::from_hex(s).map_err(E::custom)
            }

            fn visit_bytes<E: serde::de::Error>(self, s: &[u8]) -> Result<KeyHash, E> {
                KeyHash::from_hex_bytes(s).map_err(E::custom)
            }
        }
        // As bytes: serde_json then hands over the string's raw contents without checking them for UTF-8
        // (hex digits are ASCII; anything else is refused here). Self-describing formats give a str as usual.
        d.deserialize_bytes(Hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let mut rng = rand::rng();
        let k = ApiKey::generate(API_KEY_PREFIX, &mut rng);
        assert_eq!(k.expose().len(), API_KEY_PREFIX.len() + BODY_LEN);
        let parsed = ApiKey::parse(API_KEY_PREFIX, k.expose()).unwrap();
        assert_eq!(parsed.hash(), k.hash());
        assert_ne!(ApiKey::generate(API_KEY_PREFIX, &mut rng).hash(), k.hash());
        assert!(!format!("{k:?}").contains(&k.expose()[VISIBLE_PREFIX_LEN..]));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert_eq!(ApiKey::parse(API_KEY_PREFIX, "sk-other"), Err(SecretFormatError::Prefix(API_KEY_PREFIX)));
        assert_eq!(ApiKey::parse(API_KEY_PREFIX, "sk-sy-short"), Err(SecretFormatError::Length));
        let bad = format!("sk-sy-{}", "!".repeat(BODY_LEN));
        assert_eq!(ApiKey::parse(API_KEY_PREFIX, &bad), Err(SecretFormatError::Alphabet));
    }

    #[test]
    fn key_hash_sets_hash_by_prefix() {
        let a = KeyHash::of("a");
        let mut b = a;
        b.0[31] ^= 1; // same prefix, different hash: same bucket, still told apart
        let set: KeyHashSet = [a, b, KeyHash::of("c")].into_iter().collect();
        assert_eq!(set.len(), 3);
        assert!(set.contains(&a) && set.contains(&b) && !set.contains(&KeyHash::of("d")));
        assert_eq!(KeyHashState.hash_one(a), a.prefix());
    }

    #[test]
    fn hash_round_trips_as_hex() {
        let h = KeyHash::of("abc");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
        assert_eq!(serde_json::from_str::<KeyHash>(&json).unwrap(), h);
        assert_eq!(serde_json::from_slice::<KeyHash>(json.as_bytes()).unwrap(), h);
        assert_eq!(serde_json::from_value::<KeyHash>(serde_json::json!(h.to_hex())).unwrap(), h);
        // Upper case and escaped digits decode too; anything but 64 hex digits is refused.
        assert_eq!(KeyHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        let escaped = format!("\"\\u0062{}\"", &h.to_hex()[1..]);
        assert_eq!(serde_json::from_str::<KeyHash>(&escaped).unwrap(), h);
        let hex = h.to_hex();
        for bad in [&hex[1..], &format!("{hex}0"), &format!("g{}", &hex[1..]), &format!("é{}", &hex[2..]), ""] {
            assert!(KeyHash::from_hex(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<KeyHash>(&format!("{bad:?}")).is_err(), "{bad}");
        }
        for byte in 0..=255u8 {
            let mut s = hex.clone().into_bytes();
            s[7] = byte;
            assert_eq!(KeyHash::from_hex_bytes(&s).is_ok(), byte.is_ascii_hexdigit(), "{byte}");
        }
    }
}
