"""OpenAI Responses request -> the pipeline's ``ChatRequest``:

* ``input``: a string (one user message) or items. ``message`` items keep their role
  (``developer`` is ``system``; all system text is merged into one leading system message, after
  ``instructions``); their text parts (``input_text``, ``output_text``) are joined with newlines.
  A vision model also reads ``input_image`` parts (``image_url``: a data: URL or an http(s) URL)
  of user messages and ``function_call_output`` items; a text-only model answers 400.
  ``function_call`` items become the assistant's ``tool_calls`` (consecutive calls share one
  assistant message), ``function_call_output`` items ``tool`` messages. ``reasoning`` items
  become the next assistant message's ``reasoning_content`` only: never visible text.
* ``previous_response_id``: the stored conversation (inputs and outputs of the whole chain,
  without earlier ``instructions``) goes before this ``input``.
* ``tools``: function tools in Responses' flat shape ``{"type": "function", "name", ...}``;
  ``tool_choice`` ``none|auto|required|{"type": "function", "name"}``.
* ``text.format`` ``json_object``/``json_schema`` -> ``response_format`` (structured outputs).
* ``reasoning.effort`` ``none`` turns the template's thinking switch off (``enable_thinking``);
  other efforts leave the template's default.
* ``max_output_tokens`` beyond the room the context leaves is cut to fit.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec

from ..errors import APIError, bad_request, from_decode_error
from ..pipeline import ChatRequest
from ..responses_store import ResponsesStore
from ..schemas import responses as R
from ..schemas.common import SamplingFields
from . import media_parts
from .media_parts import image_part, text_only

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(req: R.ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as checked items (plain JSON, each with an id: what the store keeps)."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        raw: list[Any] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": req.input}]}]
    else:
        raw = [dict(item, type="message") if "type" not in item and "role" in item else item for item in req.input]
    try:
        items = msgspec.convert(raw, list[R.InputItem])
    except msgspec.ValidationError as exc:
        err = from_decode_error(exc)
        raise bad_request(err.message.replace("at `", "at `input"), param="input") from None
    out = []
    for i, item in enumerate(items):
        if isinstance(item, R.ItemReference):
            raise bad_request(f"input[{i}]: item_reference items are not supported; send the item itself "
                              "or use previous_response_id", param="input")
        if isinstance(item, R.MessageItem) and item.role not in ROLES:
            raise bad_request(f"input[{i}].role must be 'user', 'assistant', 'system' or 'developer', "
                              f"got {item.role!r}", param="input")
        if isinstance(item, R.MessageItem):  # stored (and listed) as the SDK's item types: parts, a status
            if isinstance(item.content, str):
                part = R.OutputText if item.role == "assistant" else R.InputText
                item.content = [part(text=item.content)]
            item.status = item.status or "completed"
        if item.id is None:
            item.id = item_id({R.MessageItem: "msg", R.FunctionCallItem: "fc", R.FunctionCallOutputItem: "fco",
                               R.ReasoningItem: "rs", R.McpApprovalResponseItem: "mcpa"}[type(item)])
        out.append(msgspec.to_builtins(item))
    return out


def _text(content: Any, where: str, vision: bool = False) -> str | list[dict[str, Any]]:
    """A message's (or a tool output's) content: text joined with newlines, or parts in order when it
    holds an ``input_image`` (an ``image_url`` part for the pipeline; ``media_parts``)."""
    if isinstance(content, str):
        return content
    pieces: list[Any] = []
    for j, part in enumerate(content):
        kind, at = part.get("type"), f"{where}.content[{j}]"
        if kind in ("input_text", "output_text"):
            pieces.append(part["text"])
        elif kind == "refusal":
            pieces.append(part["refusal"])
        elif kind == "input_image" and vision:
            if part.get("file_id") is not None and not part.get("image_url"):
                raise bad_request(f"{at}: input_image by file_id is not supported; send image_url "
                                  "(a data: URL or an http(s) URL)", param="input")
            if not isinstance(part.get("image_url"), str) or not part["image_url"]:
                raise bad_request(f"{at}: input_image needs an image_url", param="input")
            pieces.append(image_part(part["image_url"], at))
        elif kind == "input_image":
            raise text_only(at, "input_image parts", param="input")
        else:
            raise bad_request(f"{at}: {kind} parts are not supported", param="input")
    return media_parts.content(pieces)


def _arguments(arguments: str) -> dict[str, Any] | str:
    """Templates want a mapping; a model's malformed arguments are replayed as written."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else {"value": value}


def to_messages(items: list[dict[str, Any]], instructions: str | None, vision: bool = False) -> list[dict[str, Any]]:
    system = [instructions] if instructions else []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    answered = mcp_answered(items)  # approval requests with an answer (unanswered ones are left out)

    def assistant(fresh_for: str) -> dict[str, Any]:
        """The assistant message this item joins: the last one while it can still take it."""
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant" and not last.get("tool_calls") and \
                (fresh_for != "reasoning" or not last["content"]):
            return last
        if fresh_for == "call" and last is not None and last["role"] == "assistant":
            return last
        out.append({"role": "assistant", "content": ""})
        return out[-1]

    for i, item in enumerate(items):
        kind, where = item["type"], f"input[{i}]"
        if kind == "message":
            role = ROLES[item["role"]]
            text = _text(item["content"], where, vision)
            if role != "user" and not isinstance(text, str):
                raise bad_request(f"{where}: input_image parts belong in user messages or function_call_output "
                                  "items", param="input")
            if role == "system":
                system.append(text)
            elif role == "assistant":
                msg = assistant("text")
                msg["content"] = msg["content"] + ("\n" if msg["content"] else "") + text
            else:
                out.append({"role": "user", "content": text})
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            msg = assistant("call")
            msg.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function",
                 "function": {"name": item["name"], "arguments": _arguments(item["arguments"])}})
        elif kind == "function_call_output":
            msg = {"role": "tool", "tool_call_id": item["call_id"], "content": _text(item["output"], where, vision)}
            if item["call_id"] in names:
                msg["name"] = names[item["call_id"]]
            out.append(msg)
        elif kind == "reasoning":
            parts = [c["text"] for c in item.get("content") or []] or [s["text"] for s in item.get("summary") or []]
            if parts:
                msg = assistant("reasoning")
                msg["reasoning_content"] = "\n".join(parts)
        elif kind.startswith("mcp_"):
            mcp_item_messages(item, answered, assistant, out)
    # an assistant turn made of reasoning alone renders as nothing visible: leave it out
    out = [m for m in out if m["role"] != "assistant" or m["content"] or m.get("tool_calls")
           or "reasoning_content" not in m]
    if not out:
        raise bad_request("input: at least one user or assistant item is required", param="input")
    return ([{"role": "system", "content": "\n".join(system)}] if system else []) + out


def mcp_answered(items: list[dict[str, Any]]) -> set[str]:
    return {i["approval_request_id"] for i in items
            if i["type"] in ("mcp_approval_response", "mcp_call") and i.get("approval_request_id")}


def mcp_item_messages(item: dict[str, Any], answered: set[str], assistant, out: list[dict[str, Any]]) -> None:
    """MCP items as the model saw them: a call (or an answered approval request) is an assistant tool call
    of the function ``label__tool``, its output (or a refusal) the tool message; tool listings are not
    part of the prompt."""
    from ...mcp_host.tools import function_name

    kind = item["type"]

    def call(call_id: str) -> None:
        assistant("call").setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function",
             "function": {"name": function_name(item["server_label"], item["name"]),
                          "arguments": _arguments(item["arguments"])}})

    if kind == "mcp_approval_request" and item["id"] in answered:
        call(item["id"])
    elif kind == "mcp_call":
        call_id = item.get("approval_request_id")
        if call_id is None or call_id not in {c["id"] for m in out for c in m.get("tool_calls") or []}:
            call_id = item["id"]
            call(call_id)
        error = item.get("error") or {}
        if not error:
            text = item.get("output") or ""
        else:
            text = "Error: " + (item.get("output") or error.get("message") or "the tool reported an error")
        out.append({"role": "tool", "tool_call_id": call_id, "content": text})
    elif kind == "mcp_approval_response" and not item["approve"]:
        reason = f": {item['reason']}" if item.get("reason") else ""
        out.append({"role": "tool", "tool_call_id": item["approval_request_id"],
                    "content": f"Error: the user declined this call{reason}"})


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.get("type") != "function":
            raise bad_request(f"tools[{i}]: tool type {t.get('type')!r} is not supported; this server runs "
                              "function tools ({'type': 'function', 'name', 'parameters'})", param="tools")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise bad_request(f"tools[{i}].name: a function tool needs a name", param="tools")
        fn: dict[str, Any] = {"name": t["name"]}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        params = t.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"tools[{i}].parameters must be a JSON Schema object", param="tools")
        fn["parameters"] = params if params is not None else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: str | dict[str, Any] | None, tools: list | None) -> str | dict[str, Any] | None:
    if choice is None or choice in ("auto", "none"):
        return choice
    if choice == "required":
        if not tools:
            raise bad_request("tool_choice 'required' needs tools", param="tool_choice")
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        if not tools:
            raise bad_request("a named tool_choice needs tools", param="tool_choice")
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad_request("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'name': ...}",
                      param="tool_choice")


def _response_format(text: R.TextConfig | None) -> dict[str, Any] | None:
    fmt = text.format if text else None
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise bad_request("text.format json_schema needs a 'schema' object", param="text")
        spec = {"name": fmt.get("name") or "output", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise bad_request(f"text.format.type must be 'text', 'json_object' or 'json_schema', got {fmt.get('type')!r}",
                      param="text")


def history(store: ResponsesStore, previous_id: str | None) -> list[dict[str, Any]]:
    if previous_id is None:
        return []
    entry = store.get(previous_id)
    if entry is None:
        raise APIError(404, f"Previous response with id '{previous_id}' not found.", param="previous_response_id",
                       code="previous_response_not_found")
    return entry.conversation


def to_chat_request(req: R.ResponsesRequest, items: list[dict[str, Any]], vision: bool = False) -> ChatRequest:
    """``items``: the whole conversation (stored history, then this request's input items);
    ``vision``: the model reads images (else an ``input_image`` is a 400)."""
    if req.background:
        raise bad_request("background responses are not supported", param="background")
    if req.max_output_tokens is not None and req.max_output_tokens < 1:
        raise bad_request("max_output_tokens must be at least 1", param="max_output_tokens")
    messages = to_messages(items, req.instructions, vision)
    tools = _tools(req.tools)
    kwargs = {"enable_thinking": False} if req.reasoning and req.reasoning.effort == "none" else {}
    sampling = SamplingFields(model=req.model, temperature=req.temperature, top_p=req.top_p, stream=req.stream,
                              ignore_eos=req.ignore_eos)
    return ChatRequest(
        model=req.model, sampling=sampling, max_tokens=req.max_output_tokens, messages=messages, tools=tools,
        tool_choice=_tool_choice(req.tool_choice, tools), parallel_tool_calls=req.parallel_tool_calls,
        response_format=_response_format(req.text), chat_template_kwargs=kwargs, stream=req.stream,
        clamp_max_tokens=True, id_prefix="resp", media=media_parts.take_media(messages))
