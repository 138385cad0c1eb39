"""Incremental detokenization that never emits a broken UTF-8 sequence.

mlx-lm's streaming detokenizers drop the leading space of the first token (they
are built for chat transcripts), which loses text in completions ("is" ->
"Paris" instead of " Paris"). We decode a short window instead: the text of
``tokens[prefix:]`` minus the text of ``tokens[prefix:read]``, seeded with the
last few prompt tokens so the first token is decoded in context, and we hold
back any text that ends in an incomplete character (U+FFFD) until the next token
completes it. The tokenizer's own ``decode`` handles every tokenizer family.
"""

from __future__ import annotations

from typing import Any

CONTEXT_TOKENS = 5


def fast_decoder(tokenizer: Any):
    """The Rust ``tokenizers`` decoder when it gives the same text as ``decode``
    (no post-hoc space clean-up), else the tokenizer's own ``decode``: a per-token
    call, so skipping transformers' Python wrapper is worth it (~5x)."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None and not getattr(hf, "clean_up_tokenization_spaces", True):
        return lambda ids: backend.decode(ids, skip_special_tokens=False)
    return tokenizer.decode


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int] | None = None, decode=None):
        self._decode = decode or fast_decoder(tokenizer)
        context = list(prompt_ids[-CONTEXT_TOKENS:]) if prompt_ids else []
        self.tokens: list[int] = context
        self.prefix = 0
        self.read = len(context)
        self._context = len(context)

    def add(self, token: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        self.tokens.append(token)
        prefix_text = self._decode(self.tokens[self.prefix:self.read]) if self.read > self.prefix else ""
        full = self._decode(self.tokens[self.prefix:])
        if len(full) > len(prefix_text) and not full.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.tokens)
            return full[len(prefix_text):]
        return ""

    def flush(self) -> str:
        """Text still held back (an incomplete character at the very end)."""
        if self.read >= len(self.tokens):
            return ""
        prefix_text = self._decode(self.tokens[self.prefix:self.read]) if self.read > self.prefix else ""
        full = self._decode(self.tokens[self.prefix:])
        self.prefix = self.read = len(self.tokens)
        return full[len(prefix_text):]
