//! Partial parsing of OpenAI request bodies: only the top level is split into raw members, only the fields the
//! gateway needs (`model`, `stream`, `stream_options`) are decoded, and the upstream body is rebuilt from the
//! original bytes of every other member — nothing the client sent is re-serialised or lost.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::ProxyError;

/// A request body split into its top-level members, borrowing the client's bytes.
pub struct RequestBody<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// Whether the client itself asked for a usage chunk at the end of the stream.
    pub client_wants_usage: bool,
}

impl<'a> RequestBody<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, ProxyError> {
        // Nested members are captured raw, unchecked for depth, so bound it here before anything reaches an
        // upstream parser.
        if nesting_exceeds(body, MAX_DEPTH) {
            return Err(ProxyError::BadRequest(format!("The request body nests deeper than {MAX_DEPTH} levels.")));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let members = de
            .deserialize_map(MembersVisitor)
            .map_err(|e| ProxyError::BadRequest(format!("The request body is not a valid JSON object: {e}")))?;
        de.end().map_err(|e| ProxyError::BadRequest(format!("Trailing data after the JSON body: {e}")))?;

        let mut model = None;
        let mut stream = false;
        let mut client_wants_usage = false;
        for (k, v) in &members {
            match k.as_ref() {
                "model" => {
                    let m: Cow<'a, str> = serde_json::from_str(v.get())
                        .map_err(|_| ProxyError::BadRequest("`model` must be a string.".to_owned()))?;
                    model = Some(m);
                }
                "stream" => {
                    stream = match v.get() {
                        "true" => true,
                        "false" | "null" => false,
                        _ => {
                            return Err(ProxyError::BadRequest("`stream` must be a boolean.".to_owned()));
                        }
                    }
                }
                "stream_options" => {
                    let opts: Option<StreamOptions> = serde_json::from_str(v.get())
                        .map_err(|_| ProxyError::BadRequest("`stream_options` must be an object.".to_owned()))?;
                    client_wants_usage = opts.and_then(|o| o.include_usage).unwrap_or(false);
                }
                _ => {}
            }
        }
        let model = model.ok_or_else(|| ProxyError::BadRequest("You must provide a model parameter.".to_owned()))?;
        Ok(Self { members, model, stream, client_wants_usage })
    }

    /// The body to send upstream: the same members in the same order, `model` replaced by the upstream name
    /// (already JSON-encoded) and, for streams of endpoints that have the option (`stream_usage_option`),
    /// `stream_options.include_usage` forced on so usage is metered.
    pub fn upstream_body(&self, upstream_model_json: &str, stream_usage_option: bool) -> Vec<u8> {
        let force_usage = self.stream && stream_usage_option;
        let capacity = self.members.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>() + 64;
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        let mut first = true;
        let mut push_member = |out: &mut Vec<u8>, key: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys came from valid JSON; re-encoding a str cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        let mut saw_stream_options = false;
        for (k, v) in &self.members {
            match k.as_ref() {
                "model" => push_member(&mut out, k, upstream_model_json),
                "stream_options" if force_usage => {
                    saw_stream_options = true;
                    push_member(&mut out, k, &with_include_usage(v));
                }
                _ => push_member(&mut out, k, v.get()),
            }
        }
        if force_usage && !saw_stream_options {
            push_member(&mut out, "stream_options", r#"{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }
}

/// Deepest array/object nesting accepted (serde_json's own default recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Whether `[`/`{` nesting outside strings goes deeper than `max`. One pass, no allocation.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// `stream_options` with `include_usage: true`, other options kept. Small object, so a full parse is fine.
fn with_include_usage(raw: &RawValue) -> String {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()) {
        Ok(mut map) => {
            map.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
            serde_json::Value::Object(map).to_string()
        }
        Err(_) => r#"{"include_usage":true}"#.to_owned(),
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(8);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if members.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format_args!("duplicate member `{}`", key.0)));
            }
            let value: &'de RawValue = map.next_value()?;
            members.push((key.0, value));
        }
        Ok(members)
    }
}

/// A member name, borrowed from the body unless it contained escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(body: &str, model: &str) -> serde_json::Value {
        let parsed = RequestBody::parse(body.as_bytes()).unwrap();
        let json = serde_json::to_string(model).unwrap();
        serde_json::from_slice(&parsed.upstream_body(&json, true)).unwrap()
    }

    #[test]
    fn only_the_model_changes_and_everything_else_is_kept_byte_for_byte() {
        let body = r#"{"model":"gpt","messages":[{"role":"user","content":"hi \u00e9"}],"temperature":0.12345678901234567,"x":{"deep":[1,2]}}"#;
        let parsed = RequestBody::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.model, "gpt");
        assert!(!parsed.stream);
        let out = String::from_utf8(parsed.upstream_body(r#""upstream-1""#, true)).unwrap();
        assert_eq!(out, body.replace(r#""gpt""#, r#""upstream-1""#));
    }

    #[test]
    fn streams_get_include_usage_and_keep_other_stream_options() {
        let v = rewrite(r#"{"model":"m","stream":true,"messages":[]}"#, "u");
        assert_eq!(v["stream_options"]["include_usage"], true);
        let v = rewrite(r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"other":1}}"#, "u");
        assert_eq!(v["stream_options"], serde_json::json!({"include_usage": true, "other": 1}));
        let p = RequestBody::parse(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(p.client_wants_usage);
        let v = rewrite(r#"{"model":"m","stream":false}"#, "u");
        assert!(v.get("stream_options").is_none());
        let p = RequestBody::parse(br#"{"model":"m","stream":true}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.upstream_body(r#""u""#, false)).unwrap();
        assert!(v.get("stream_options").is_none(), "endpoints without the option get none");
    }

    #[test]
    fn model_names_with_quotes_are_encoded() {
        let v = rewrite(r#"{"model":"a\"b"}"#, "x\"y\n");
        assert_eq!(v["model"], "x\"y\n");
        let p = RequestBody::parse(br#"{"model":"a\"b"}"#).unwrap();
        assert_eq!(p.model, "a\"b");
    }

    #[test]
    fn nesting_is_bounded_outside_strings_only() {
        let ok = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(RequestBody::parse(ok.as_bytes()).is_ok());
        let deep = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(RequestBody::parse(deep.as_bytes()), Err(ProxyError::BadRequest(_))));
        let in_string = format!("{{\"model\":\"m\",\"x\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(RequestBody::parse(in_string.as_bytes()).is_ok());
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        for body in [
            "",
            "[]",
            "{",
            r#"{"model":1}"#,
            r#"{"messages":[]}"#,
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a"} x"#,
            r#"{"model":"a","stream":"yes"}"#,
        ] {
            let err = RequestBody::parse(body.as_bytes()).err().unwrap_or_else(|| panic!("{body} parsed"));
            assert!(matches!(err, ProxyError::BadRequest(_)), "{body}: {err:?}");
        }
    }
}

#[cfg(test)]
#[path = "request_fuzz.rs"]
mod fuzz;
