"""Reassemble a streamed chat completion the way OpenAI clients do."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Streamed:
    content: str = ""
    reasoning: str = ""
    reasoning_content: str = ""
    calls: list[dict] = field(default_factory=list)  # {"id", "type", "name", "arguments"} by index
    finish_reason: str | None = None
    pieces: int = 0  # tool-call deltas seen


def collect(chunks) -> Streamed:
    out = Streamed()
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        extra = delta.model_extra or {}
        out.content += delta.content or ""
        out.reasoning += extra.get("reasoning") or ""
        out.reasoning_content += extra.get("reasoning_content") or ""
        for tc in delta.tool_calls or []:
            out.pieces += 1
            while len(out.calls) <= tc.index:
                out.calls.append({"id": None, "type": None, "name": None, "arguments": ""})
            call = out.calls[tc.index]
            if tc.id:
                assert call["id"] is None, "a call's id is sent once, with its first piece"
                call["id"], call["type"] = tc.id, tc.type
            if tc.function and tc.function.name:
                assert call["name"] is None, "a call's name is sent once, with its first piece"
                call["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                assert call["name"] is not None, "arguments came before the call's name"
                call["arguments"] += tc.function.arguments
        if choice.finish_reason:
            out.finish_reason = choice.finish_reason
    return out
