"""What a chat request asks of its output: ``tool_choice`` and ``response_format``.

Turns them into (a) the JSON Schema that constrains decoding, if any, compiled
off the event loop into a ``Guide``, and (b) the tool parser that reads the reply.

* ``tool_choice: "auto"`` (the default with tools): the server's tool parser reads
  the model's own markup; no constraint.
* ``"none"``: tools are left out of the prompt; nothing is parsed.
* ``"required"``: the reply is forced to a JSON list of ``{"name", "parameters"}``
  objects, one of the request's tools each, and read as tool calls.
* a named function: the reply is forced to that function's arguments object.
* ``response_format`` ``json_object`` / ``json_schema``: the reply is forced to JSON
  (matching the schema).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..core.guided import GrammarError, Guide
from ..plugins.parsers.forced import NamedFunctionParser, RequiredCallsParser
from .errors import bad_request


@dataclass
class OutputPlan:
    tool_mode: str  # "none", "auto", "required" or "named"
    function: str | None = None  # the named function
    schema: dict | None = None  # the JSON Schema decoding must follow
    param: str | None = None  # the request field the schema came from (for errors)


def _tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    return [(t.get("function") or {}).get("name") for t in tools or [] if isinstance(t, dict)]


def _parameters(tool: dict[str, Any]) -> dict:
    fn = tool.get("function") or {}
    params = fn.get("parameters")
    params = params if isinstance(params, dict) and params else {"type": "object"}
    return closed_objects(params) if fn.get("strict") is True else params


def plan_output(req) -> OutputPlan:
    """``req``: anything with ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``
    as a chat request carries them (``pipeline.ChatRequest``, ``ChatCompletionRequest``)."""
    choice, tools = req.tool_choice, req.tools
    if choice is None:
        plan = OutputPlan("auto" if tools else "none")
    elif isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise bad_request(f"tool_choice must be 'auto', 'none', 'required' or a named function, got {choice!r}",
                              param="tool_choice")
        plan = OutputPlan(choice if tools else "none")
        if choice == "required" and not tools:
            raise bad_request("tool_choice 'required' needs tools", param="tool_choice")
    else:
        fn = choice.get("function") if choice.get("type", "function") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise bad_request("tool_choice must look like {'type': 'function', 'function': {'name': ...}}",
                              param="tool_choice")
        if name not in _tool_names(tools):
            raise bad_request(f"tool_choice names function {name!r}, which is not in tools", param="tool_choice")
        plan = OutputPlan("named", function=name)
    if plan.tool_mode == "named":
        tool = next(t for t in tools if (t.get("function") or {}).get("name") == plan.function)
        plan.schema, plan.param = _parameters(tool), "tool_choice"
    elif plan.tool_mode == "required":
        options = [{"type": "object", "properties": {"name": {"type": "string", "enum": [n]},
                                                     "parameters": _parameters(t)},
                    "required": ["name", "parameters"], "additionalProperties": False}
                   for t, n in zip(tools, _tool_names(tools))]
        plan.schema = {"type": "array", "minItems": 1, "items": {"anyOf": options}}
        if req.parallel_tool_calls is False:
            plan.schema["maxItems"] = 1
        plan.param = "tool_choice"
    fmt = _response_format_schema(req.response_format)
    if fmt is not None:
        if plan.schema is not None:
            raise bad_request("response_format cannot be combined with tool_choice 'required' or a named function",
                              param="response_format")
        plan.schema, plan.param = fmt, "response_format"
    return plan


def _response_format_schema(fmt: dict[str, Any] | None) -> dict | None:
    if not fmt:
        return None
    kind = fmt.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("response_format json_schema needs json_schema.schema, a JSON Schema object",
                              param="response_format")
        return closed_objects(schema) if spec.get("strict") is True else schema
    raise bad_request(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
                      param="response_format")


def closed_objects(schema):
    """OpenAI's strict mode: an object schema that does not say otherwise allows no
    properties beyond those it lists (plain JSON Schema allows any). Returns a copy."""
    if isinstance(schema, list):
        return [closed_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed_objects(v) for k, v in schema.items()}
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out \
            and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


async def compile_plan(grammar, plan: OutputPlan) -> Guide | None:
    """Compile the plan's schema in a worker thread; a bad schema is a 400."""
    if plan.schema is None:
        return None
    try:
        return await asyncio.to_thread(grammar.compile_json_schema, plan.schema)
    except GrammarError as exc:
        raise bad_request(f"Invalid JSON Schema in {plan.param}: {exc}", param=plan.param,
                          code="invalid_schema") from None


def forced_tool_parser(plan: OutputPlan) -> tuple[type, dict] | None:
    """The parser (and its options) for replies a grammar forced, else None."""
    if plan.tool_mode == "named":
        return NamedFunctionParser, {"function": plan.function}
    if plan.tool_mode == "required":
        return RequiredCallsParser, {}
    return None
