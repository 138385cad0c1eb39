"""Render chat messages into prompt token ids with the model's chat template."""

from __future__ import annotations

import json
from typing import Any

from .errors import bad_request
from .schemas.chat import ChatMessage

ROLES = {"system", "developer", "user", "assistant", "tool"}


def _content_text(msg: ChatMessage, index: int, media: list | None) -> str | list[dict[str, Any]] | None:
    """The message content for the template. With ``media`` (a vision model), image
    and video parts become ``{"type": "image"}`` / ``{"type": "video"}`` (what vision
    templates expect) and are appended
    to ``media`` as ``(where, part)`` in prompt order."""
    content = msg.content
    if content is None or isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif media is not None and kind in ("image_url", "video_url"):
            media.append((f"messages[{index}].content[{j}]", part))
            parts.append({"type": "image" if kind == "image_url" else "video"})
        elif media is not None and kind == "input_audio":
            raise bad_request(f"messages[{index}]: content of type {kind!r} is not supported for this model yet",
                              param="messages")
        elif kind in ("image_url", "input_image", "image", "video_url", "input_audio"):
            raise bad_request(f"messages[{index}]: content of type {kind!r} needs a vision or audio model; "
                              "this model reads text only", param="messages")
        else:
            raise bad_request(f"messages[{index}]: unknown content part type {kind!r}", param="messages")
    return parts


def to_template_messages(messages: list[ChatMessage], media: list | None = None) -> list[dict[str, Any]]:
    if not messages:
        raise bad_request("messages must contain at least one message", param="messages")
    out = []
    for i, msg in enumerate(messages):
        if msg.role not in ROLES:
            raise bad_request(f"messages[{i}].role {msg.role!r} is not one of: " + ", ".join(sorted(ROLES)),
                              param="messages")
        item: dict[str, Any] = {"role": "system" if msg.role == "developer" else msg.role,
                                "content": _content_text(msg, i, media)}
        if msg.role == "user" and item["content"] is None:
            raise bad_request(f"messages[{i}]: a user message needs content", param="messages")
        if msg.name is not None:
            item["name"] = msg.name
        if msg.tool_calls:
            item["tool_calls"] = [
                {"id": tc.id, "type": "function", "function": {
                    "name": tc.function.name,
                    "arguments": _arguments(tc.function.arguments, i)}}
                for tc in msg.tool_calls
            ]
        if msg.tool_call_id is not None:
            item["tool_call_id"] = msg.tool_call_id
        reasoning = msg.reasoning if msg.reasoning is not None else msg.reasoning_content
        if reasoning is not None:
            item["reasoning_content"] = reasoning
        out.append(item)
    return out


def _arguments(arguments: str | dict, index: int) -> dict:
    """Templates expect arguments as a mapping (they ``tojson`` it)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        raise bad_request(f"messages[{index}].tool_calls: function.arguments is not valid JSON",
                          param="messages") from None
    return value if isinstance(value, dict) else {"value": value}


def check_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, tool in enumerate(tools):
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise bad_request(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param="tools")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise bad_request(f"tools[{i}].function.name must be a non-empty string", param="tools")
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise bad_request(f"tools[{i}].function.parameters must be a JSON Schema object", param="tools")
    return tools


def render_messages(tokenizer, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                    kwargs: dict[str, Any], add_generation_prompt: bool = True,
                    continue_final_message: bool = False) -> list[int]:
    """Template-ready messages (and OpenAI-format tools) -> prompt token ids. Every API renders here,
    so a token count (``/v1/messages/count_tokens``) equals what generation feeds the model."""
    text = render_messages_text(tokenizer, messages, tools=tools, kwargs=kwargs,
                                add_generation_prompt=add_generation_prompt,
                                continue_final_message=continue_final_message)
    return text if isinstance(text, list) else tokenizer.encode(text, add_special_tokens=False)


def render_messages_text(tokenizer, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                         kwargs: dict[str, Any], add_generation_prompt: bool = True,
                         continue_final_message: bool = False) -> str | list[int]:
    """The templated prompt as text (token ids for a model without a template): what a
    vision model's processor reads, to expand image placeholders."""
    if getattr(tokenizer, "chat_template", None) is None and not getattr(tokenizer, "has_chat_template", False):
        text = "".join(f"{m['role']}: {m['content'] or ''}\n" for m in messages) + "assistant:"
        return tokenizer.encode(text)
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False,
            add_generation_prompt=add_generation_prompt and not continue_final_message,
            continue_final_message=continue_final_message, **kwargs)
    except Exception as exc:  # template errors (role order, missing fields) are the caller's
        raise bad_request(f"The chat template could not render these messages: {exc}", param="messages") from None
    if not isinstance(text, str):
        raise bad_request("The chat template did not produce text", param="messages")
    return text
