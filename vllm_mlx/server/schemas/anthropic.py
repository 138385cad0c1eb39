"""Anthropic Messages wire schemas (``POST /v1/messages``, ``/v1/messages/count_tokens``).

Unknown body fields (``cache_control``, ``metadata``, ``context_management``, ``container``,
``service_tier``, ...) are ignored, as Claude Code and the anthropic SDK send new ones all the
time; unknown content block types are a 400 naming the block.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

# -- request content blocks ----------------------------------------------------------


class TextBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    text: str


class ImageBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="image"):
    source: dict[str, Any]


class DocumentBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="document"):
    source: dict[str, Any]
    title: str | None = None


class ToolReferenceBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="tool_reference"):
    tool_name: str


class ToolUseBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any] = {}


ToolResultPart = Union[TextBlock, ImageBlock, DocumentBlock, ToolReferenceBlock]


class ToolResultBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[ToolResultPart] | None = None
    is_error: bool = False


class ThinkingBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str | None = None  # the SDK leaves it out when None; we never check it


class RedactedThinkingBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="redacted_thinking"):
    data: str = ""


ContentBlock = Union[TextBlock, ImageBlock, DocumentBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock,
                     RedactedThinkingBlock]


class MessageParam(msgspec.Struct, kw_only=True):
    role: str  # "user", "assistant" (or "system", merged into the system prompt)
    content: str | list[ContentBlock]


class ToolParam(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None  # None or "custom"; server tools ("web_search_...", "bash_...") are refused


class ToolChoice(msgspec.Struct, kw_only=True):
    type: str  # "auto", "any", "tool", "none"
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(msgspec.Struct, kw_only=True):
    type: str  # "enabled", "adaptive", "between_tools", "disabled"
    budget_tokens: int | None = None


class OutputConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    format: dict[str, Any] | None = None  # {"type": "json_schema", "schema": {...}}


class CountTokensRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[MessageParam]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    max_tokens: int
    stream: bool = False
    stop_sequences: list[str] | None = None
    # anthropic SDK 2.13+ no longer types these (they travel in extra_body); still honoured
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    ignore_eos: bool = False  # vLLM's extension (benchmarks: every reply makes exactly max_tokens tokens)


# -- response -------------------------------------------------------------------------


class TextOut(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    text: str


class ThinkingOut(msgspec.Struct, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class ToolUseOut(msgspec.Struct, kw_only=True, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


ContentOut = Union[TextOut, ThinkingOut, ToolUseOut]


class Usage(msgspec.Struct, kw_only=True):
    """Anthropic's accounting: ``input_tokens`` are the prompt tokens not read from the cache,
    so input + cache_read + cache_creation is the whole prompt (what count_tokens reports)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(msgspec.Struct, kw_only=True):
    id: str
    type: str = "message"
    role: str = "assistant"
    model: str
    content: list[ContentOut]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(msgspec.Struct, kw_only=True):
    input_tokens: int


# -- stream events (each SSE frame: "event: <type>" + "data: <json>") ------------------------


class TextDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="text_delta"):
    text: str


class ThinkingDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="thinking_delta"):
    thinking: str


class SignatureDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="signature_delta"):
    signature: str


class InputJsonDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="input_json_delta"):
    partial_json: str


class MessageStart(msgspec.Struct, kw_only=True, tag_field="type", tag="message_start"):
    message: Message


class Ping(msgspec.Struct, kw_only=True, tag_field="type", tag="ping"):
    pass


class ContentBlockStart(msgspec.Struct, kw_only=True, tag_field="type", tag="content_block_start"):
    index: int
    content_block: ContentOut


class ContentBlockDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="content_block_delta"):
    index: int
    delta: Union[TextDelta, ThinkingDelta, SignatureDelta, InputJsonDelta]


class ContentBlockStop(msgspec.Struct, kw_only=True, tag_field="type", tag="content_block_stop"):
    index: int


class StopInfo(msgspec.Struct, kw_only=True):
    stop_reason: str | None
    stop_sequence: str | None = None


class MessageDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="message_delta"):
    delta: StopInfo
    usage: Usage


class MessageStop(msgspec.Struct, kw_only=True, tag_field="type", tag="message_stop"):
    pass
