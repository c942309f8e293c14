"""Claude routes and the Anthropic-compatible endpoint driven by the official SDKs, unmodified.

Run by control-plane/tests/api/providers_anthropic.rs against a node whose model `claude` is served by the mock
provider's Anthropic mode and whose model `gpt` by its OpenAI mode. The OpenAI SDK gets tool calls back from the
Claude route, streamed and not; the Anthropic SDK talks to /v1/messages for both models. Exits non-zero on the
first failed check.
"""

import json
import os

import anthropic
from openai import OpenAI

node = os.environ["SWITCHYARD_NODE"]
key = os.environ["SWITCHYARD_API_KEY"]
expected = "tok0 tok1 tok2 tok3 tok4 "
checks = []

openai_client = OpenAI(base_url=node + "/v1", api_key=key, max_retries=0)
anthropic_client = anthropic.Anthropic(base_url=node, api_key=key, max_retries=0)

openai_tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
anthropic_tools = [{
    "name": "get_weather",
    "description": "Weather by city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
question = [{"role": "user", "content": "weather in paris please"}]


def check(name, fn):
    fn()
    checks.append(name)


def openai_tools_from_claude():
    r = openai_client.chat.completions.create(model="claude", messages=question, tools=openai_tools)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call
    # The tool result goes back; the model answers in text.
    follow = question + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    r = openai_client.chat.completions.create(model="claude", messages=follow, tools=openai_tools)
    assert r.choices[0].message.content == expected and r.choices[0].finish_reason == "stop", r
    assert r.usage.prompt_tokens_details.cached_tokens == 2, r.usage


def openai_tools_stream_from_claude():
    calls = {}
    finish = None
    for chunk in openai_client.chat.completions.create(
        model="claude", messages=question, tools=openai_tools, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls", finish
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls
    assert usage.completion_tokens == 5, usage


def anthropic_sdk(model, passthrough):
    # The mock's OpenAI mode calls tools with `{}`, its Anthropic mode with {"city": "Paris"}.
    tool_input = {"city": "Paris"} if passthrough else {}

    def run():
        m = anthropic_client.messages.create(model=model, max_tokens=100, system="be brief", messages=question)
        assert m.type == "message" and m.content[0].type == "text" and m.content[0].text == expected, m
        assert m.stop_reason == "end_turn" and m.usage.output_tokens == 5, m
        if passthrough:
            assert m.usage.cache_read_input_tokens == 2, m.usage
        m = anthropic_client.messages.create(model=model, max_tokens=100, messages=question, tools=anthropic_tools)
        assert m.stop_reason == "tool_use", m
        use = next(b for b in m.content if b.type == "tool_use")
        assert use.name == "get_weather" and use.input == tool_input, use
        with anthropic_client.messages.stream(model=model, max_tokens=100, messages=question) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == expected, text
        assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5, final
        with anthropic_client.messages.stream(
            model=model, max_tokens=100, messages=question, tools=anthropic_tools
        ) as stream:
            final = stream.get_final_message()
        use = next(b for b in final.content if b.type == "tool_use")
        assert final.stop_reason == "tool_use" and use.input == tool_input, final
    return run


def anthropic_sdk_errors():
    try:
        anthropic_client.messages.create(model="no-such-model", max_tokens=10, messages=question)
    except anthropic.NotFoundError:
        pass
    else:
        raise AssertionError("an unknown model must be a 404")


check("openai_tools_from_claude", openai_tools_from_claude)
check("openai_tools_stream_from_claude", openai_tools_stream_from_claude)
check("anthropic_sdk_to_anthropic", anthropic_sdk("claude", True))
check("anthropic_sdk_to_openai", anthropic_sdk("gpt", False))
check("anthropic_sdk_errors", anthropic_sdk_errors)
print("checks ok: " + ", ".join(checks))
