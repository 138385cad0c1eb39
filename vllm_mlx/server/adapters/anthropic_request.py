"""Anthropic Messages request -> the pipeline's ``ChatRequest`` (what a chat template understands):

* ``system`` (a string or text blocks) and any ``role: "system"`` messages become one system
  message. A leading ``x-anthropic-billing-header: ...`` line, which Claude Code changes on
  every request, is removed first: left in, it would make every prompt differ from its first
  token and defeat the prefix cache.
* ``tool_result`` blocks become ``tool`` messages (``tool_call_id``, the tool's ``name``,
  ``is_error`` kept), placed before the user text of the same turn so they follow the
  assistant's calls, as chat templates expect.
* ``thinking`` blocks become the assistant's ``reasoning_content`` (their signature is never
  checked); ``redacted_thinking`` blocks are dropped.
* Text blocks of one message are joined with newlines into one string (templates such as
  Qwen3's render only string content); a message with images keeps its blocks as parts.
* ``image`` blocks (``base64`` or ``url`` sources, also inside ``tool_result``) go to a vision
  model as ``image_url`` parts (``media_parts``); a text-only model answers 400.
* ``thinking`` config -> the template's ``enable_thinking`` switch (absent: the template's default).
* ``tool_choice`` auto/any/tool/none -> auto/required/named/none (forced choices run under a
  grammar); ``disable_parallel_tool_use`` -> one call at most.
* ``max_tokens`` beyond the room the context leaves is cut to fit; a reply that then runs out
  of room ends with ``model_context_window_exceeded``.
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request
from ..pipeline import ChatRequest
from ..schemas import anthropic as A
from ..schemas.common import SamplingFields
from . import media_parts
from .media_parts import image_part, text_only

BILLING_HEADER = "x-anthropic-billing-header:"
THINKING_ON = {"enabled": True, "adaptive": True, "between_tools": True, "disabled": False}


def _strip_billing_header(text: str) -> str:
    if not text.lstrip().lower().startswith(BILLING_HEADER):
        return text
    _, _, rest = text.lstrip().partition("\n")
    return rest.lstrip("\n")


def _system_text(system: str | list[A.TextBlock] | None) -> list[str]:
    if system is None:
        return []
    parts = [system] if isinstance(system, str) else [b.text for b in system]
    return [t for t in (_strip_billing_header(p) for p in parts) if t]


def _document_text(block: A.DocumentBlock, where: str) -> str:
    source = block.source
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        return source["data"]
    if kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(isinstance(c, dict) and c.get("type") == "text" for c in content):
            return "\n".join(str(c.get("text", "")) for c in content)
    raise bad_request(f"{where}: document source {kind!r} is not supported; this server reads plain-text "
                      "documents (source type 'text' or 'content' with text blocks)", param="messages")


def _image(block: A.ImageBlock, where: str, vision: bool) -> dict[str, Any]:
    """An ``image`` block as an ``image_url`` part: a ``base64`` source becomes a data: URL, a ``url``
    source is fetched under the server's media rules (``server/media.py``)."""
    if not vision:
        raise text_only(where)
    source = block.source
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not data:
            raise bad_request(f"{where}.source: a base64 image needs 'media_type' and 'data' strings",
                              param="messages")
        return image_part(f"data:{media_type};base64,{data}", where)
    if kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise bad_request(f"{where}.source: a url image needs a 'url' string", param="messages")
        return image_part(source["url"], where)
    raise bad_request(f"{where}.source: image source {kind!r} is not supported (use 'base64' or 'url')",
                      param="messages")


def _tool_result_content(block: A.ToolResultBlock, where: str, vision: bool) -> str | list[dict[str, Any]]:
    content = block.content
    if content is None or isinstance(content, str):
        return content or ""
    pieces: list[Any] = []
    for j, part in enumerate(content):
        if isinstance(part, A.TextBlock):
            pieces.append(part.text)
        elif isinstance(part, A.ToolReferenceBlock):
            pieces.append(part.tool_name)
        elif isinstance(part, A.DocumentBlock):
            pieces.append(_document_text(part, f"{where}.content[{j}]"))
        elif isinstance(part, A.ImageBlock):
            pieces.append(_image(part, f"{where}.content[{j}]", vision))
        else:
            raise bad_request(f"{where}.content[{j}]: a tool_result cannot hold a "
                              f"{type(part).__struct_config__.tag!r} block", param="messages")
    return media_parts.content(pieces)


def _user_turn(blocks: list, i: int, tool_names: dict[str, str], vision: bool) -> list[dict[str, Any]]:
    tools, pieces = [], []
    for j, b in enumerate(blocks):
        where = f"messages[{i}].content[{j}]"
        if isinstance(b, A.TextBlock):
            pieces.append(b.text)
        elif isinstance(b, A.ToolResultBlock):
            msg = {"role": "tool", "tool_call_id": b.tool_use_id,
                   "content": _tool_result_content(b, where, vision)}
            if b.tool_use_id in tool_names:
                msg["name"] = tool_names[b.tool_use_id]
            if b.is_error:
                msg["is_error"] = True
            tools.append(msg)
        elif isinstance(b, A.DocumentBlock):
            pieces.append(_document_text(b, where))
        elif isinstance(b, A.ImageBlock):
            pieces.append(_image(b, where, vision))
        else:
            raise bad_request(f"{where}: a user message cannot hold a {type(b).__struct_config__.tag!r} block",
                              param="messages")
    return tools + ([{"role": "user", "content": media_parts.content(pieces)}] if pieces or not tools else [])


def _assistant_turn(blocks: list, i: int, tool_names: dict[str, str]) -> dict[str, Any]:
    texts, reasoning, calls = [], [], []
    for j, b in enumerate(blocks):
        if isinstance(b, A.TextBlock):
            texts.append(b.text)
        elif isinstance(b, A.ThinkingBlock):
            reasoning.append(b.thinking)
        elif isinstance(b, A.RedactedThinkingBlock):
            continue
        elif isinstance(b, A.ToolUseBlock):
            tool_names[b.id] = b.name
            calls.append({"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}})
        else:
            raise bad_request(f"messages[{i}].content[{j}]: an assistant message cannot hold a "
                              f"{type(b).__struct_config__.tag!r} block", param="messages")
    msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "\n".join(reasoning)
    return msg


def _messages(req: A.CountTokensRequest, vision: bool) -> list[dict[str, Any]]:
    if not req.messages:
        raise bad_request("messages: at least one message is required", param="messages")
    system = _system_text(req.system)
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for i, m in enumerate(req.messages):
        if m.role == "system":
            parts = [m.content] if isinstance(m.content, str) else \
                [b.text for b in m.content if isinstance(b, A.TextBlock)]
            system.extend(t for t in (_strip_billing_header(p) for p in parts) if t)
        elif m.role not in ("user", "assistant"):
            raise bad_request(f"messages[{i}].role: {m.role!r} is not 'user' or 'assistant'", param="messages")
        elif isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
        elif m.role == "user":
            out.extend(_user_turn(m.content, i, tool_names, vision))
        else:
            out.append(_assistant_turn(m.content, i, tool_names))
    if not out:
        raise bad_request("messages: at least one user or assistant message is required", param="messages")
    return ([{"role": "system", "content": "\n".join(system)}] if system else []) + out


def _tools(tools: list[A.ToolParam] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.type not in (None, "custom"):
            raise bad_request(f"tools[{i}]: server tool type {t.type!r} is not supported; this server runs "
                              "client tools only ({name, description, input_schema})", param="tools")
        fn: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.input_schema if t.input_schema is not None else {"type": "object"}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: A.ToolChoice | None, tools: list | None) -> tuple[str | dict | None, bool | None]:
    if choice is None:
        return None, None
    parallel = None if choice.disable_parallel_tool_use is None else not choice.disable_parallel_tool_use
    if choice.type in ("any", "tool") and not tools:
        raise bad_request(f"tool_choice {choice.type!r} needs tools", param="tool_choice")
    if choice.type == "auto":
        return "auto", parallel
    if choice.type == "none":
        return "none", parallel
    if choice.type == "any":
        return "required", parallel
    if choice.type == "tool":
        if not choice.name:
            raise bad_request("tool_choice of type 'tool' needs a name", param="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    raise bad_request(f"tool_choice.type must be 'auto', 'any', 'tool' or 'none', got {choice.type!r}",
                      param="tool_choice")


def _response_format(config: A.OutputConfig | None) -> dict[str, Any] | None:
    fmt = config.format if config else None
    if not fmt:
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise bad_request("output_config.format must be {'type': 'json_schema', 'schema': {...}}",
                          param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def to_chat_request(req: A.CountTokensRequest, vision: bool = False) -> ChatRequest:
    """Works for both ``MessagesRequest`` and ``CountTokensRequest`` (same prompt either way).
    ``vision``: the model reads images (else an image block is a 400)."""
    messages = _messages(req, vision)
    tools = _tools(req.tools)
    tool_choice, parallel = _tool_choice(req.tool_choice, tools)
    kwargs: dict[str, Any] = {}
    if req.thinking is not None:
        if req.thinking.type not in THINKING_ON:
            raise bad_request("thinking.type must be 'enabled', 'adaptive', 'between_tools' or 'disabled'",
                              param="thinking")
        kwargs["enable_thinking"] = THINKING_ON[req.thinking.type]
    prefill = messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls")
    stop = getattr(req, "stop_sequences", None)
    sampling = SamplingFields(model=req.model, temperature=getattr(req, "temperature", None),
                              top_p=getattr(req, "top_p", None), top_k=getattr(req, "top_k", None),
                              stop=list(stop) if stop else None, stream=getattr(req, "stream", False),
                              ignore_eos=getattr(req, "ignore_eos", False))
    return ChatRequest(
        model=req.model, sampling=sampling, max_tokens=getattr(req, "max_tokens", None), messages=messages,
        tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
        response_format=_response_format(req.output_config), chat_template_kwargs=kwargs,
        add_generation_prompt=not prefill, continue_final_message=prefill,
        stream=sampling.stream, clamp_max_tokens=True, id_prefix="msg", media=media_parts.take_media(messages))
