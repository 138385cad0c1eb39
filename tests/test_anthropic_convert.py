"""Anthropic request -> the pipeline's chat request: the conversions chat templates depend on."""

from __future__ import annotations

import msgspec
import pytest

from vllm_mlx.server.adapters.anthropic_request import to_chat_request
from vllm_mlx.server.errors import APIError
from vllm_mlx.server.schemas.anthropic import MessagesRequest


def convert(**body):
    body = {"model": "m", "max_tokens": 10, **body}
    return to_chat_request(msgspec.json.decode(msgspec.json.encode(body), type=MessagesRequest))


def test_tool_results_come_before_the_user_text_of_their_turn_and_keep_is_error():
    req = convert(messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "need tools", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "here you go"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "clock broken"}, {"type": "tool_reference", "tool_name": "x"}]}]},
    ])
    assert req.messages == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "need tools", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny", "name": "get_weather"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "clock broken\nx", "name": "get_time", "is_error": True},
        {"role": "user", "content": "here you go"},
    ]
    assert req.add_generation_prompt and not req.continue_final_message


def test_system_blocks_role_system_and_billing_header():
    req = convert(system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3; cch=9f;"},
                          {"type": "text", "text": "You are helpful."}],
                  messages=[{"role": "system", "content": "x-anthropic-billing-header: a=b\nBe brief."},
                            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    assert req.messages == [{"role": "system", "content": "You are helpful.\nBe brief."},
                            {"role": "user", "content": "a\nb"}]


def test_tools_tool_choice_thinking_and_sampling():
    tool = {"name": "f", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "x"}}
    req = convert(messages=[{"role": "user", "content": "hi"}], tools=[tool], temperature=0.2, top_k=5,
                  stop_sequences=["END"], tool_choice={"type": "any", "disable_parallel_tool_use": True},
                  thinking={"type": "disabled"})
    assert req.tools == [{"type": "function", "function": {"name": "f", "description": "d",
                                                           "parameters": {"type": "object"}}}]
    assert (req.tool_choice, req.parallel_tool_calls) == ("required", False)
    assert req.chat_template_kwargs == {"enable_thinking": False}
    assert (req.sampling.temperature, req.sampling.top_k, req.sampling.stop) == (0.2, 5, ["END"])
    assert req.max_tokens == 10 and req.clamp_max_tokens
    named = convert(messages=[{"role": "user", "content": "hi"}], tools=[tool], tool_choice={"type": "tool", "name": "f"})
    assert named.tool_choice == {"type": "function", "function": {"name": "f"}}


def test_assistant_prefill_continues_the_last_message():
    req = convert(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure, "}])
    assert req.continue_final_message and not req.add_generation_prompt


def test_text_documents_are_read_and_other_sources_refused():
    req = convert(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc body"}},
        {"type": "text", "text": "summarize"}]}])
    assert req.messages == [{"role": "user", "content": "doc body\nsummarize"}]
    with pytest.raises(APIError, match="document source 'base64'"):
        convert(messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA"}}]}])
