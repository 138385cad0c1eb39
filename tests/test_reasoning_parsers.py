"""The qwen3 and deepseek_r1 reasoning parsers: in any chunking the same split as
a whole read, and no piece of a tag ever lands in reasoning or content."""

from __future__ import annotations

import random

import pytest

from vllm_mlx.plugins import PluginManager

PM = PluginManager(load_entry_points=False)


class CharTokenizer:
    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def ids(text):
    return [ord(c) for c in text]


PROMPT = ids("<|im_start|>assistant\n")
PROMPT_OPEN = ids("<|im_start|>assistant\n<think>\n")  # R1 templates open the block themselves
PROMPT_NO_THINK = ids("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # enable_thinking=false

CASES = [
    ("qwen3", PROMPT, "<think>\nWeigh it.\n</think>\n\nThe answer.", "Weigh it.", "The answer."),
    ("qwen3", PROMPT, "No tags, just < and </ here.", "", "No tags, just < and </ here."),
    ("qwen3", PROMPT, "Half </think> tag.", "", "Half </think> tag."),  # qwen3 needs both tags
    ("qwen3", PROMPT_OPEN, "Weigh it.\n</think>\n\nThe answer.", "Weigh it.", "The answer."),
    ("qwen3", PROMPT_NO_THINK, "The answer.", "", "The answer."),
    ("deepseek_r1", PROMPT, "Weigh it.\n</think>\n\nThe answer.", "Weigh it.", "The answer."),
    ("deepseek_r1", PROMPT, "<think>\nWeigh it.\n</think>\n\nThe answer.", "Weigh it.", "The answer."),
    ("deepseek_r1", PROMPT_OPEN, "Weigh it.\n</think>\n\nThe answer.", "Weigh it.", "The answer."),
    ("deepseek_r1", PROMPT, "Still thinking when it was cut off", "Still thinking when it was cut off", ""),
    ("deepseek_r1", PROMPT_NO_THINK, "The answer.", "", "The answer."),
]


def chunkings(text):
    rng = random.Random(7)
    yield list(text)
    yield [text]
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(text)), min(5, len(text) - 1)))
        yield [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@pytest.mark.parametrize("name,prompt,text,reasoning,content", CASES)
def test_any_chunking_splits_like_a_whole_read(name, prompt, text, reasoning, content):
    cls, tok = PM.reasoning_parser(name), CharTokenizer()
    r, c = cls(tok, prompt).extract_reasoning(text)
    assert ((r or ""), (c or "")) == (reasoning, content)
    for pieces in chunkings(text):
        parser = cls(tok, prompt)
        outs = [parser.feed(p) for p in pieces] + [parser.finish()]
        # exact joins: a tag split across pieces never leaks, in part or whole, into either field
        assert ("".join(r for r, _ in outs), "".join(c for _, c in outs)) == (reasoning, content)
