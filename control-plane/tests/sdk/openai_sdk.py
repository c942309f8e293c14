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


for name, fn in [
    ("chat", chat),
    ("stream", stream),
    ("stream_with_usage", stream_with_usage),
    ("bad_key", bad_key),
    ("unknown_model", unknown_model),
]:
    check(name, fn)

print(f"openai python sdk {openai.__version__}: checks ok: {', '.join(checks)}")
sys.exit(0)
