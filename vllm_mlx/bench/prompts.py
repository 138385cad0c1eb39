"""Deterministic benchmark prompts, shared by every bench mode.

A prompt is ``words`` words drawn (seeded) from a fixed list, so each request of
a run gets a different prompt and every run gets the same prompts. ``serve``
sends the text as one user message; ``engine`` renders it with the model's chat
template exactly as the server does, so both ask the model for the same work.
"""

from __future__ import annotations

import random
from typing import Any

# Plain lowercase English words (one token each in a real LLM vocabulary; about
# 2.4 tokens each in the small random-weight test models' 4k-8k vocabularies,
# which matches the reference load generator's prompt length there).
WORDS: tuple[str, ...] = tuple("""
window pixel table field metal number object square system value world model
apple candle dance needle timber desert ember forest hollow stone winter seven
chair light green storm smoke story signal corner flower mother nature summer
ticket travel breeze lantern bridge eagle garden harbor island jacket kettle
ladder ocean pepper river paper silver quiet rapid orange market cloud engine
mirror north thunder copper marble valley meadow fabric zebra glacier
""".split())

WARMUP_TEXT = "Say hello."


def make_texts(count: int, words: int, seed: int = 1) -> list[str]:
    """``count`` prompts of ``words`` words each; the i-th prompt depends only on (seed, i)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, words))) for _ in range(count)]


def render_chat_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as one user turn, rendered the way the server renders it."""
    messages = [{"role": "user", "content": text}]
    if getattr(tokenizer, "chat_template", None) is None and not getattr(tokenizer, "has_chat_template", False):
        # The server's fallback for tokenizers without a template.
        return list(tokenizer.encode(f"user: {text}\nassistant:"))
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(rendered, add_special_tokens=False))


def random_token_prompts(count: int, length: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """``count`` prompts of ``length`` random ordinary token ids (for the raw mode, which has no template)."""
    rng = random.Random(seed)
    low = min(100, max(0, vocab_size // 4))
    high = max(low + 1, min(vocab_size, 2000))
    return [[rng.randrange(low, high) for _ in range(max(1, length))] for _ in range(count)]
