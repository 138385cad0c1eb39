"""The in-process Python API, shaped like vLLM's: ``LLM`` for offline batches,
``AsyncLLM`` for embedding the engine in an asyncio application.

Both run the same engine the server runs (continuous batching, prefix cache,
parsers' absence aside), so ``LLM(model).generate(prompts)`` with greedy
sampling gives the server's answers. A vision-language model (kind ``mllm``)
reads images (and, where the model takes it, video) in ``chat`` messages as the server
does: ``image_url`` / ``video_url`` parts with a data: URL, an http(s) URL or (under
``allowed_local_media_path``) a file:// URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from .core import AsyncEngine, Engine, EngineConfig, SamplingParams
from .core.async_engine import SequenceResult


@dataclass
class CompletionOutput:
    """One generated sequence (vLLM's name and fields)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: str | int | None = None
    logprobs: list[dict[int, float]] | None = None  # per token: {token_id: logprob} incl. the top alternatives
    cumulative_logprob: float | None = None


@dataclass
class RequestOutput:
    """The outputs of one prompt (vLLM's name and fields)."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True
    num_cached_tokens: int = 0
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


PromptLike = str | Sequence[int]


def _has_media(messages: list[dict]) -> bool:
    """Whether any message holds a part other than text (an image: handled as the server does)."""
    return any(isinstance(m.get("content"), list) and
               any(isinstance(p, dict) and p.get("type") != "text" for p in m["content"]) for m in messages)


def _to_output(r: SequenceResult) -> CompletionOutput:
    logprobs = None
    cumulative = None
    if r.logprobs is not None:
        logprobs = [{e.token_id: e.logprob, **{tid: lp for _, lp, tid in e.top}} for e in r.logprobs]
        cumulative = sum(e.logprob for e in r.logprobs)
    return CompletionOutput(r.index, r.text, list(r.token_ids), r.finish_reason, r.stop_reason, logprobs, cumulative)


class AsyncLLM:
    """The engine for asyncio applications: ``await llm.generate(...)`` or
    ``async for out in llm.stream(...)`` from any number of tasks at once."""

    def __init__(self, model: str | None = None, *, max_num_seqs: int = 64, prefill_step_size: int = 512,
                 kv_cache_memory: str | None = None, block_size: int = 32, enable_prefix_caching: bool = True,
                 plugins: Sequence[str] = (), cache_policy: str = "auto",
                 allowed_local_media_path: str | None = None, limit_mm_per_prompt: dict[str, int] | None = None):
        from .core.vision import VisionPrefill
        from .model_source import load_model
        from .plugins import PluginManager
        from .plugins.interfaces import CacheOptions
        from .server.media import MediaSettings, media_limits

        pm = PluginManager(extra=list(plugins))
        self.loaded = load_model(model, pm, kinds=("llm", "mllm"), runner="generate")
        policy = pm.cache_policy_for(cache_policy, self.loaded.model, self.loaded.config)
        options = CacheOptions()
        self.tokenizer = self.loaded.tokenizer
        self.reads_images = self.loaded.kind == "mllm"
        # vLLM's LLM names these two options the same way (local files are refused unless allowed)
        self.media = MediaSettings(limits=media_limits(limit_mm_per_prompt), local_root=allowed_local_media_path)
        vision = VisionPrefill(self.loaded.model, prefill_step_size) if self.reads_images else None
        self.engine = Engine(self.loaded.model, self.tokenizer, vision=vision, config=EngineConfig(
            max_num_seqs=max_num_seqs, prefill_step_size=prefill_step_size, block_size=block_size,
            kv_cache_memory=kv_cache_memory, prefix_caching=enable_prefix_caching,
            make_cache=lambda: policy.make_cache(self.loaded.model, options),
        )).start()
        self._front = AsyncEngine(self.engine)
        self._ids = itertools.count()

    # -- prompts -------------------------------------------------------------
    def encode(self, prompt: PromptLike) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            return prompt, self.tokenizer.encode(prompt)
        return None, [int(t) for t in prompt]

    def render_chat(self, messages: list[dict], *, tools: list[dict] | None = None,
                    add_generation_prompt: bool = True, chat_template_kwargs: dict | None = None) -> str:
        """The chat template applied to ``messages`` (OpenAI-style dicts), as text."""
        return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  **(chat_template_kwargs or {}))

    # -- generation ----------------------------------------------------------
    async def generate(self, prompt: PromptLike, params: SamplingParams | None = None, *,
                       mm: Any = None) -> RequestOutput:
        """``mm``: a ``core.vision.MultiModalInput`` for a prompt with images (``chat`` makes both)."""
        text, ids = self.encode(prompt)
        params = params or SamplingParams()
        if mm is not None:  # blocks of prompts with media are shared only with the same media
            from .core.vision import salted

            params = dataclasses.replace(params, cache_salt=salted(params.cache_salt, mm.content_hash))
        request_id = f"llm-{next(self._ids)}"
        results = await self._front.generate_all(ids, params, request_id=request_id, mm=mm)
        error = next((r.error for r in results if r.finish_reason == "error"), None)
        return RequestOutput(request_id, text, ids, [_to_output(r) for r in results], error=error,
                             num_cached_tokens=max((r.cached_tokens for r in results), default=0))

    async def stream(self, prompt: PromptLike, params: SamplingParams | None = None) -> AsyncIterator[CompletionOutput]:
        """Yield each sequence's new text as it is generated (``token_ids`` holds the new ids)."""
        _, ids = self.encode(prompt)
        async for d in self._front.generate(ids, params or SamplingParams()):
            yield CompletionOutput(d.index, d.text, list(d.token_ids), d.finish_reason, d.stop_reason)

    async def chat(self, messages: list[dict], params: SamplingParams | None = None, **template) -> RequestOutput:
        """One conversation; image parts go to a vision model (``ValueError`` for bad or unreadable media,
        or images sent to a text-only model)."""
        if not _has_media(messages):
            return await self.generate(self.encode_chat(messages, **template), params)
        ids, mm = await self.encode_vision_chat(messages, **template)
        return await self.generate(ids, params, mm=mm)

    def encode_chat(self, messages: list[dict], **template) -> list[int]:
        text = self.render_chat(messages, **template)
        return self.tokenizer.encode(text, add_special_tokens=False)

    async def encode_vision_chat(self, messages: list[dict], *, tools: list[dict] | None = None,
                                 add_generation_prompt: bool = True, chat_template_kwargs: dict | None = None,
                                 mm_processor_kwargs: dict | None = None) -> tuple[list[int], Any]:
        """Prompt ids (image placeholders expanded) and the ``MultiModalInput`` of a conversation with
        images, made by the server's own code (``server.vision_prompt``), so both give the same prompt."""
        import msgspec

        from .server.chat_template import render_messages_text, to_template_messages
        from .server.errors import APIError
        from .server.schemas.chat import ChatMessage
        from .server.vision_prompt import prepare_vision_prompt

        try:
            media: list | None = [] if self.reads_images else None
            template_messages = to_template_messages(msgspec.convert(messages, list[ChatMessage]), media)
            text = render_messages_text(self.tokenizer, template_messages, tools=tools,
                                        kwargs=chat_template_kwargs or {},
                                        add_generation_prompt=add_generation_prompt)
            if isinstance(text, list):
                raise ValueError("this model has no chat template to place images in")
            return await prepare_vision_prompt(self.loaded.processor, text, media or [], self.media,
                                               mm_processor_kwargs, video=getattr(self.loaded.model, "video", False))
        except APIError as exc:
            raise ValueError(exc.message) from None
        except msgspec.ValidationError as exc:
            raise ValueError(f"messages: {exc}") from None

    def shutdown(self) -> None:
        self.engine.shutdown()


class LLM:
    """vLLM's offline API: ``LLM(model).generate(prompts, SamplingParams(...))``.

    All prompts of a call are submitted at once and batched by the engine.
    ``model`` is a folder or a Hugging Face repo id (None: the built-in demo model).
    """

    def __init__(self, model: str | None = None, **engine_options: Any):
        self._llm = AsyncLLM(model, **engine_options)
        self.tokenizer = self._llm.tokenizer

    def generate(self, prompts: PromptLike | Sequence[PromptLike],
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[RequestOutput]:
        """One ``RequestOutput`` per prompt, in order. ``prompts``: a string, a list of
        strings, or token-id lists; ``sampling_params``: one for all, or one per prompt."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        params = sampling_params if isinstance(sampling_params, (list, tuple)) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("give one SamplingParams for all prompts or one per prompt")

        async def run():
            return await asyncio.gather(*(self._llm.generate(p, sp) for p, sp in zip(prompts, params)))

        return list(asyncio.run(run()))

    def chat(self, messages: list[dict] | Sequence[list[dict]], sampling_params: SamplingParams | None = None,
             **template: Any) -> list[RequestOutput]:
        """Apply the chat template to one conversation (a list of message dicts) or
        several, then generate. ``template``: ``tools``, ``add_generation_prompt``,
        ``chat_template_kwargs`` (e.g. ``{"enable_thinking": False}``)."""
        convos = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        if not any(_has_media(c) for c in convos):
            return self.generate([self._llm.encode_chat(c, **template) for c in convos], sampling_params)

        async def run():
            return await asyncio.gather(*(self._llm.chat(c, sampling_params, **template) for c in convos))

        return list(asyncio.run(run()))

    def shutdown(self) -> None:
        self._llm.shutdown()

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
