"""Constrained decoding: a grammar (from a JSON Schema) masks the logits of one
request at each step, so the model can only write text the grammar accepts.

The grammar engine is llguidance: it installs from pip as one self-contained
wheel (no torch, no other dependencies), takes any Hugging Face fast tokenizer
through its ``tokenizer.json``, compiles JSON Schemas lazily (no up-front
automaton over the whole vocabulary, so compiling costs milliseconds) and
computes a step's token mask in tens of microseconds. xgrammar needs torch;
outlines-core compiles a full index per schema up front.

``GrammarCompiler.compile`` runs off the engine thread (the route calls it in a
worker thread) and returns a ``Guide``; each sequence of the request gets its
own matcher copy through ``Guide.logits_processor``, a per-request logits
processor like logit_bias, so constrained and free requests share one batch.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import mlx.core as mx
import numpy as np

LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

# Compact JSON with the separators models write anyway (", " and ": "): no free
# whitespace, which a model with weak preferences could repeat forever.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    """The schema or grammar cannot be compiled; the message says why."""


class Guide:
    """A compiled grammar. Every sequence gets its own copy of the matcher."""

    def __init__(self, matcher: Any, vocab_size: int, eos_ids: list[int], grammar: str | None = None):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.eos_ids = eos_ids
        self.grammar = grammar  # the source, so an engine in another process can compile it again

    def logits_processor(self) -> LogitsProcessor:
        return _GrammarMask(self.matcher.deep_copy(), self.vocab_size, self.eos_ids)


class _GrammarMask:
    """The per-sequence logits processor: feeds the matcher each sampled token,
    then keeps only the tokens it allows. It reads tokens by position in the
    context, so a preempted sequence that resumes with its tokens so far
    (``sampling.rewind``) needs no rewind here: the token drawn ahead and
    dropped was never fed to the matcher."""

    def __init__(self, matcher: Any, vocab_size: int, eos_ids: list[int]):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.eos_ids = eos_ids
        self.start: int | None = None  # context length at the first call (the prompt)
        self.consumed = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        # ``tokens`` is the whole context: the prompt on the first call, then one
        # more sampled token per call (or, after a preemption, all of them again).
        if self.start is None:
            self.start = tokens.size
        else:
            new = tokens[self.start + self.consumed:].tolist()
            for token in new:
                self.matcher.consume_token(int(token))
            self.consumed += len(new)
        width = logits.shape[-1]
        allowed = np.zeros(width, dtype=np.bool_)
        if self.matcher.is_error():  # cannot happen with the mask applied; if it does, end the reply
            allowed[[t for t in self.eos_ids if t < width]] = True
        else:
            mask = np.frombuffer(self.matcher.compute_logit_bias(), dtype=np.uint8)
            n = min(width, mask.size, self.vocab_size)
            allowed[:n] = mask[:n] > 0
        return mx.where(mx.array(allowed), logits, mx.array(-mx.inf, dtype=logits.dtype))


class GrammarCompiler:
    """Compiles grammars for one tokenizer. Thread-safe; the llguidance view of
    the tokenizer is built once, on first use."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: Iterable[int]):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_ids = sorted(eos_ids)
        self._lltok = None
        self._lock = threading.Lock()

    def _ll_tokenizer(self):
        import llguidance

        with self._lock:
            if self._lltok is None:
                hf = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
                backend = getattr(hf, "backend_tokenizer", None)
                if backend is None:
                    raise GrammarError("structured output needs a Hugging Face fast tokenizer (tokenizer.json)")
                self._lltok = llguidance.LLTokenizer(backend.to_str(), n_vocab=self.vocab_size,
                                                     eos_token=self.eos_ids or None)
            return self._lltok

    def compile(self, grammar: str) -> Guide:
        import llguidance

        lltok = self._ll_tokenizer()
        matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Guide(matcher, self.vocab_size, self.eos_ids, grammar)

    def compile_json_schema(self, schema: dict) -> Guide:
        import llguidance

        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except (ValueError, TypeError) as exc:
            raise GrammarError(str(exc)) from None
        return self.compile(grammar)
