"""Drives a running Switchyard data-plane node with the official OpenAI Python SDK, unmodified.

Run by the Rust end-to-end suite (control-plane/tests/api/sdk.rs), which starts the node, the control plane and
the mock provider, and passes SWITCHYARD_BASE_URL, SWITCHYARD_API_KEY and SWITCHYARD_MODEL. Exits non-zero on the
first failed check.
"""

import os
import sys

import openai
from openai import OpenAI

base_url = os.environ["SWITCHYARD_BASE_URL"]
api_key = os.environ["SWITCHYARD_API_KEY"]
model = os.environ["SWITCHYARD_MODEL"]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
messages = [{"role": "user", "content": "hello from the python sdk"}]
expected = "tok0 tok1 tok2 tok3 tok4 "
checks = []


def check(name, fn):
    fn()
    checks.append(name)


def chat():
    r = client.chat.completions.create(model=model, messages=messages)
    assert r.choices[0].message.content == expected, r
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 5, r.usage


def stream():
    parts = []
    usage_chunks = 0
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage_chunks += 1
    assert "".join(parts) == expected, parts
    # The client did not ask for usage, so the gateway's own usage chunk must not reach it.
    assert usage_chunks == 0, usage_chunks


def stream_with_usage():
    last = None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    ):
        last = chunk
    assert last is not None and last.usage is not None and last.usage.completion_tokens == 5, last


def tools_round_trip():
    tools = [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather", first
    follow_up = messages + [
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model=model, messages=follow_up, tools=tools)
    assert second.choices[0].message.content == expected, second


def response_format():
    r = client.chat.completions.create(model=model, messages=messages, response_format={"type": "json_object"})
    assert r.choices[0].message.content == expected, r


def embeddings():
    r = client.embeddings.create(model=model, input=["first text", "second"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8, r
    assert r.usage.prompt_tokens == 3, r.usage


def models():
    ids = [m.id for m in client.models.list()]
    assert model in ids, ids
    assert client.models.retrieve(model).id == model


def responses_api():
    r = client.responses.create(model=model, input="hello there")
    assert r.output_text == expected, r
    assert r.usage.input_tokens == 2 and r.usage.output_tokens == 5, r.usage


def bad_key():
    bad = OpenAI(base_url=base_url, api_key="sk-sy-not-a-real-key", max_retries=0)
    try:
        bad.chat.completions.create(model=model, messages=messages)
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.code == "invalid_api_key", e
        return
    raise AssertionError("a wrong key was accepted")


def unknown_model():
    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e
        return
    raise AssertionError("an unknown model was accepted")


def forbidden_model():
    restricted = OpenAI(base_url=base_url, api_key=os.environ["SWITCHYARD_RESTRICTED_KEY"], max_retries=0)
    try:
        restricted.chat.completions.create(model=model, messages=messages)
    except openai.PermissionDeniedError as e:
        assert e.status_code == 403 and e.code == "model_not_allowed", e
        return
    raise AssertionError("a model outside the key's allow-list was served")


def bad_request():
    try:
        client.chat.completions.create(model=model, messages=messages, extra_body={"stream": "yes"})
    except openai.BadRequestError as e:
        assert e.status_code == 400, e
        return
    raise AssertionError("an invalid body was accepted")


for name, fn in [
    ("chat", chat),
    ("stream", stream),
    ("stream_with_usage", stream_with_usage),
    ("tools_round_trip", tools_round_trip),
    ("response_format", response_format),
    ("embeddings", embeddings),
    ("models", models),
    ("responses_api", responses_api),
    ("bad_key", bad_key),
    ("unknown_model", unknown_model),
    ("forbidden_model", forbidden_model),
    ("bad_request", bad_request),
]:
    check(name, fn)

print(f"openai python sdk {openai.__version__}: checks ok: {', '.join(checks)}")
sys.exit(0)
