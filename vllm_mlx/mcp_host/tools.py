"""MCP tools as OpenAI function tools: namespaced names, schemas, fingerprints, results as text."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_NAME = 64  # OpenAI's limit on a function name
SEPARATOR = "__"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class HostedTool:
    """One tool of one server, under the name the model sees."""

    name: str  # namespaced: "files__read_file"
    server: str
    tool: str  # the server's own name for it
    description: str
    parameters: dict[str, Any]
    fingerprint: str

    @classmethod
    def of(cls, server: str, tool: Any, name: str, fingerprint: str = "") -> "HostedTool":
        """From an MCP ``Tool`` of ``server``, under the function ``name``."""
        return cls(name=name, server=server, tool=tool.name, description=tool.description or tool.title or "",
                   parameters=parameters_of(tool.input_schema), fingerprint=fingerprint)

    def as_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def function_name(server: str, tool: str, taken: set[str] | None = None) -> str:
    """``server__tool`` as a valid OpenAI function name ([A-Za-z0-9_-], at most 64 characters).

    Characters outside that set become ``_``; a name that is too long, or that would
    collide with one already ``taken``, ends in a short hash of the original pair instead.
    """
    name = _INVALID.sub("_", f"{server}{SEPARATOR}{tool}")
    if len(name) <= MAX_NAME and name not in (taken or ()):
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9]}_{digest}"


def parameters_of(input_schema: Any) -> dict[str, Any]:
    """An MCP ``inputSchema`` as OpenAI ``parameters`` (always an object schema)."""
    schema = dict(input_schema) if isinstance(input_schema, dict) else {}
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema


def fingerprint(tool: Any) -> str:
    """A hash of what the model is told about a tool and what it may send: a change
    after connecting (a "rug pull") disables the tool."""
    data = {"name": tool.name, "title": getattr(tool, "title", None), "description": tool.description,
            "input_schema": tool.input_schema, "output_schema": getattr(tool, "output_schema", None),
            "annotations": _plain(getattr(tool, "annotations", None))}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if dump else value


def result_text(result: Any) -> str:
    """What the model reads of a ``CallToolResult``: the text blocks, a short note for
    each binary block, else the structured content as JSON."""
    parts = []
    for block in result.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}, {len(block.data or '')} base64 characters]")
        elif kind == "resource":
            res = block.resource
            parts.append(getattr(res, "text", None) or f"[resource {res.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{kind} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def truncate(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_bytes`` of UTF-8 (never inside a character), with a note."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text, False
    kept = data[:max_bytes].decode(errors="ignore")
    return f"{kept}\n[truncated: {len(data)} bytes, limit {max_bytes}]", True
