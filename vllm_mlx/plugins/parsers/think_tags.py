"""Reasoning parser for models that wrap their reasoning in start/end tags
(``<think>...</think>`` for Qwen3 and DeepSeek-R1)."""

from __future__ import annotations

from typing import Any

from ..interfaces import ReasoningParser
from .text_scan import split_safe


# Leading whitespace is held while a start tag may follow; past this much, it is content.
MAX_LEADING_SPACE = 16


class ThinkTagReasoningParser(ReasoningParser):
    """Text before ``start`` is content; text between the tags is reasoning.

    If the prompt already ends inside an open reasoning block (the chat
    template emitted the start tag), or ``implicit_start`` is set and the
    output does not begin with the tag, output starts in reasoning and only the
    end tag switches to content. An unfinished block stays reasoning. If the
    prompt ends just after a closed block (thinking turned off), it is all content.
    """

    name = "think_tags"
    start = "<think>"
    end = "</think>"
    implicit_start = False

    def __init__(self, tokenizer: Any, prompt_ids: list[int] | None = None, **options: Any):
        super().__init__(tokenizer, prompt_ids, **options)
        self.state = "begin"
        self.buf = ""
        prompt_block = self._prompt_block(prompt_ids) if prompt_ids else None
        if prompt_block == "open":
            self.state = "reasoning_begin"
        elif prompt_block == "closed":  # e.g. enable_thinking=false: the template wrote an empty block
            self.state = "after_reasoning"

    def _prompt_block(self, prompt_ids: list[int]) -> str | None:
        """"open" if the prompt ends inside a reasoning block, "closed" if it ends
        right after one (nothing but whitespace since), else None."""
        tail = self.tokenizer.decode(prompt_ids[-32:])
        open_at, close_at = tail.rfind(self.start), tail.rfind(self.end)
        if open_at != -1 and open_at > close_at:
            return "open"
        if close_at != -1 and not tail[close_at + len(self.end):].strip():
            return "closed"
        return None

    def feed(self, text: str) -> tuple[str, str]:
        self.buf += text
        reasoning, content = [], []
        while self.buf:
            if self.state == "begin":
                head = self.buf.lstrip()
                if head.startswith(self.start):
                    self.buf, self.state = head[len(self.start):], "reasoning_begin"
                elif head and self.start.startswith(head):
                    break  # may still become the start tag
                elif not head and len(self.buf) <= MAX_LEADING_SPACE:
                    break  # only whitespace so far: the start tag may still follow
                else:
                    self.state = "reasoning" if self.implicit_start else "content"
            elif self.state == "reasoning_begin":
                self.buf = self.buf.lstrip()
                if self.buf:
                    self.state = "reasoning"
            elif self.state == "reasoning":
                at = self.buf.find(self.end)
                if at != -1:
                    reasoning.append(self.buf[:at].rstrip())
                    self.buf, self.state = self.buf[at + len(self.end):], "after_reasoning"
                else:
                    safe, held = split_safe(self.buf, self.end)
                    kept = safe.rstrip()  # whitespace right before the end tag is not reasoning
                    reasoning.append(kept)
                    self.buf = safe[len(kept):] + held
                    break
            elif self.state == "after_reasoning":
                self.buf = self.buf.lstrip()
                if self.buf:
                    self.state = "content"
            else:
                content.append(self.buf)
                self.buf = ""
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        buf, self.buf = self.buf, ""
        if self.state in ("reasoning", "reasoning_begin"):
            return buf, ""
        return "", buf
