//! Property tests of the partial request parser and its rewrite (bounded case counts: a few seconds in CI).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{MAX_DEPTH, RequestBody};

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes at all: an answer, never a panic.
    #[test]
    fn parsing_arbitrary_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = RequestBody::parse(&body);
    }

    /// Any JSON-looking text (the interesting part of the input space): never a panic.
    #[test]
    fn parsing_json_like_text_never_panics(body in r#"[{}\[\]",:0-9a-z\\ \n]{0,200}"#) {
        let _ = RequestBody::parse(body.as_bytes());
    }

    /// The rewrite changes the `model` member only: every other member keeps its bytes and its place.
    #[test]
    fn the_rewrite_keeps_every_other_byte(
        members in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..10),
        model in any::<String>(),
        upstream in any::<String>(),
    ) {
        let mut object: Map<String, Value> = members.into_iter().filter(|(k, _)| k != "stream").collect();
        object.insert("model".into(), Value::String(model.clone()));
        let body = serde_json::to_string(&object).unwrap();
        let parsed = RequestBody::parse(body.as_bytes()).unwrap();
        prop_assert_eq!(parsed.model.as_ref(), model.as_str());
        let upstream_json = serde_json::to_string(&upstream).unwrap();
        let out = parsed.upstream_body(&upstream_json, true);
        object.insert("model".into(), Value::String(upstream));
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&object).unwrap());
    }

    /// Nesting up to the bound parses; one level more is refused, whatever mix of arrays and objects.
    #[test]
    fn the_depth_bound_holds(kinds in prop::collection::vec(any::<bool>(), 1..200)) {
        let (mut open, mut close) = (String::new(), String::new());
        for &object in &kinds {
            if object {
                open.push_str("{\"k\":");
                close.insert(0, '}');
            } else {
                open.push('[');
                close.insert(0, ']');
            }
        }
        let body = format!("{{\"model\":\"m\",\"x\":{open}1{close}}}");
        let depth = kinds.len() + 1;
        prop_assert_eq!(RequestBody::parse(body.as_bytes()).is_ok(), depth <= MAX_DEPTH);
    }
}
