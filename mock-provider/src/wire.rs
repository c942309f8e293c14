//! OpenAI wire shapes: borrowed views of the requests the mock reads and the bodies it writes.
//!
//! Requests are read with `serde_json::from_slice` into views that borrow from the body and skip every field
//! the mock does not use, and text is reduced to word counts while parsing, so a request costs few allocations.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::answer::{Token, Usage, words};

// ---------------------------------------------------------------------------------------------------------------
// Requests

/// The non-OpenAI `mock` object a request may carry to override the config for itself.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MockOverrides {
    pub(crate) chunks: Option<usize>,
    pub(crate) chunk_delay_ms: Option<u64>,
    pub(crate) latency_ms: Option<u64>,
    pub(crate) status: Option<u16>,
    pub(crate) fail_after_chunks: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest<'a> {
    #[serde(borrow)]
    pub(crate) model: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) messages: Vec<Message<'a>>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default, borrow)]
    pub(crate) tools: Option<Vec<Tool<'a>>>,
    #[serde(default, borrow)]
    pub(crate) tool_choice: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) mock: Option<MockOverrides>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(borrow)]
    pub(crate) role: Cow<'a, str>,
    #[serde(default)]
    pub(crate) content: Words,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Tool<'a> {
    #[serde(default, borrow)]
    pub(crate) function: Option<ToolFunction<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolFunction<'a> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest<'a> {
    #[serde(borrow)]
    pub(crate) model: Cow<'a, str>,
    #[serde(default)]
    pub(crate) prompt: Words,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) mock: Option<MockOverrides>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingRequest<'a> {
    #[serde(borrow)]
    pub(crate) model: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) input: Inputs<'a>,
    #[serde(default)]
    pub(crate) mock: Option<MockOverrides>,
}

/// The word count of a text-bearing field, computed while parsing so the text is never kept.
///
/// Accepts every shape OpenAI allows for message content and prompts: a string, `null`, a token id (one word),
/// an object whose `text` field counts (a content part; other parts such as images count nothing), or an array
/// of any of these.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Words(pub(crate) u64);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WordsVisitor)
    }
}

struct WordsVisitor;

/// Keys of a content part; only `text` matters, and matching it this way avoids allocating every key.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PartKey {
    Text,
    #[serde(other)]
    Other,
}

impl<'de> Visitor<'de> for WordsVisitor {
    type Value = Words;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of strings or token ids, or an array of content parts")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Words, E> {
        Ok(Words(words(text)))
    }

    fn visit_u64<E: de::Error>(self, _token: u64) -> Result<Words, E> {
        Ok(Words(1))
    }

    fn visit_i64<E: de::Error>(self, _token: i64) -> Result<Words, E> {
        Ok(Words(1))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_none<E: de::Error>(self) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
        let mut total = 0;
        while let Some(Words(count)) = seq.next_element()? {
            total += count;
        }
        Ok(Words(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Words, A::Error> {
        let mut total = 0;
        while let Some(key) = map.next_key()? {
            match key {
                PartKey::Text => total += map.next_value::<Words>()?.0,
                PartKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Words(total))
    }
}

/// Embedding inputs: a string or an array of strings. They are kept (borrowed when unescaped) because the
/// vector is derived from their bytes.
#[derive(Debug)]
pub(crate) struct Inputs<'a>(pub(crate) Vec<Cow<'a, str>>);

#[derive(Deserialize)]
struct Input<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Inputs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InputsVisitor(std::marker::PhantomData))
    }
}

struct InputsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for InputsVisitor<'a> {
    type Value = Inputs<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Inputs<'a>, E> {
        Ok(Inputs(vec![Cow::Borrowed(text)]))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Inputs<'a>, E> {
        Ok(Inputs(vec![Cow::Owned(text.to_owned())]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs<'a>, A::Error> {
        let mut inputs = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(Input(text)) = seq.next_element()? {
            inputs.push(text);
        }
        Ok(Inputs(inputs))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Responses

/// A completion id such as `chatcmpl-mock-7`, written straight into the output without a temporary string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MockId {
    prefix: &'static str,
    number: u64,
}

impl MockId {
    pub(crate) fn chat(number: u64) -> Self {
        Self { prefix: "chatcmpl-mock-", number }
    }

    pub(crate) fn completion(number: u64) -> Self {
        Self { prefix: "cmpl-mock-", number }
    }
}

impl Serialize for MockId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.prefix, self.number))
    }
}

/// Completion text: a whole string, or one token written without a temporary string.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Text<'a> {
    Str(&'a str),
    Token(usize),
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Str(text) => serializer.serialize_str(text),
            Self::Token(i) => serializer.collect_str(&Token(*i)),
        }
    }
}

pub(crate) const TOOL_CALL_ID: &str = "call_mock_1";
pub(crate) const TOOL_CALL_ARGUMENTS: &str = "{}";

#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: MockId,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: [ChatChoice<'a>; 1],
    pub(crate) usage: Usage,
    pub(crate) system_fingerprint: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub(crate) index: u32,
    pub(crate) message: AssistantMessage<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(crate) struct AssistantMessage<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<[ToolCall<'a>; 1]>,
}

#[derive(Serialize)]
pub(crate) struct ToolCall<'a> {
    pub(crate) id: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: FunctionCall<'a>,
}

#[derive(Serialize)]
pub(crate) struct FunctionCall<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: &'static str,
}

/// A streamed chat chunk. `usage` is omitted without `include_usage`, and with it is `null` on every chunk but
/// the usage chunk, as OpenAI does.
#[derive(Serialize)]
pub(crate) struct ChatChunk<'a> {
    pub(crate) id: MockId,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: &'static str,
    pub(crate) choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

/// The `delta` of a streamed chat chunk.
pub(crate) enum Delta<'a> {
    /// The opening chunk of a text answer: `{"role":"assistant","content":""}`.
    Role,
    Content(Text<'a>),
    /// The opening chunk of a tool-call answer, naming the function with empty arguments.
    ToolCallStart {
        name: &'a str,
    },
    ToolCallArguments,
    /// `{}`, carried by the chunk with the finish reason.
    Empty,
}

#[derive(Serialize)]
struct StreamToolCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: StreamFunction<'a>,
}

#[derive(Serialize)]
struct StreamFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'static str,
}

impl Serialize for Delta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Self::Role => {
                map.serialize_entry("role", "assistant")?;
                map.serialize_entry("content", "")?;
            }
            Self::Content(text) => map.serialize_entry("content", text)?,
            Self::ToolCallStart { name } => {
                map.serialize_entry("role", "assistant")?;
                map.serialize_entry("content", &None::<&str>)?;
                let call = StreamToolCall {
                    index: 0,
                    id: Some(TOOL_CALL_ID),
                    kind: Some("function"),
                    function: StreamFunction { name: Some(name), arguments: "" },
                };
                map.serialize_entry("tool_calls", &[call])?;
            }
            Self::ToolCallArguments => {
                let call = StreamToolCall {
                    index: 0,
                    id: None,
                    kind: None,
                    function: StreamFunction { name: None, arguments: TOOL_CALL_ARGUMENTS },
                };
                map.serialize_entry("tool_calls", &[call])?;
            }
            Self::Empty => {}
        }
        map.end()
    }
}

/// A legacy completion, whole or streamed; `usage` follows the same rule as [`ChatChunk`].
#[derive(Serialize)]
pub(crate) struct TextCompletion<'a> {
    pub(crate) id: MockId,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
pub(crate) struct TextChoice<'a> {
    pub(crate) text: Text<'a>,
    pub(crate) index: u32,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<EmbeddingItem>,
    pub(crate) model: &'a str,
    pub(crate) usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingItem {
    pub(crate) object: &'static str,
    pub(crate) index: usize,
    pub(crate) embedding: [f32; 8],
}

#[derive(Serialize)]
pub(crate) struct EmbeddingUsage {
    pub(crate) prompt_tokens: u64,
    pub(crate) total_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct ErrorEnvelope<'a> {
    pub(crate) error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub(crate) struct ErrorDetail<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) param: Option<()>,
    pub(crate) code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(json: &str) -> u64 {
        serde_json::from_str::<Words>(json).unwrap().0
    }

    #[test]
    fn words_count_strings_parts_and_token_ids() {
        assert_eq!(words_of(r#""one two\nthree""#), 3);
        assert_eq!(words_of("null"), 0);
        assert_eq!(words_of(r#"["a b", "c"]"#), 3);
        assert_eq!(words_of("[[1, 2, 3]]"), 3);
        assert_eq!(
            words_of(r#"[{"type":"text","text":"two words"},{"type":"image_url","image_url":{"url":"x y z"}}]"#),
            2
        );
    }

    #[test]
    fn inputs_borrow_unescaped_strings() {
        let json = r#"["plain", "esc\"aped"]"#;
        let Inputs(inputs) = serde_json::from_str(json).unwrap();
        assert!(matches!(inputs[0], Cow::Borrowed("plain")));
        assert_eq!(inputs[1], "esc\"aped");
    }

    #[test]
    fn deltas_match_openai_shapes() {
        let json = |delta: Delta<'_>| serde_json::to_string(&delta).unwrap();
        assert_eq!(json(Delta::Role), r#"{"role":"assistant","content":""}"#);
        assert_eq!(json(Delta::Content(Text::Token(2))), r#"{"content":"tok2 "}"#);
        assert_eq!(json(Delta::Empty), "{}");
        assert_eq!(
            json(Delta::ToolCallStart { name: "f" }),
            r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_mock_1","type":"function","function":{"name":"f","arguments":""}}]}"#
        );
        assert_eq!(json(Delta::ToolCallArguments), r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#);
    }
}
