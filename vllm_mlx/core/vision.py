"""Vision-language models in the text engine.

An mlx-vlm model is a vision tower plus a language model. Only the prompt needs
the tower: once a request's prompt is prefilled, its decode steps are plain
language-model steps. So a vision request is prefilled on its own, from input
embeddings (image features scattered into the token embeddings), into fresh
per-request caches, and then joins mlx-lm's ``BatchGenerator`` exactly like a
text request whose prefix came from the prefix cache: its last prompt token is
fed as a token, the rest is already in the caches. Text requests to the same
model never touch the tower.

We do not use mlx-vlm's own batched prefill: in mlx-vlm 0.7.10 it fails for
Gemma 3 image prompts of different lengths and, for Qwen3-VL, gives wrong
logits for every row after the first; its server also fixes the sampler of a
whole batch from its first request.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn


@dataclass(eq=False)
class MultiModalInput:
    """What a request's media became after the processor: the arrays the vision
    tower reads, and a hash of the media content (for the prefix cache)."""

    pixel_values: Any  # images' mx.array (or numpy), as the model's processor made it; None: no images
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. image_grid_thw, pixel_values_videos for Qwen-VL
    content_hash: str = ""
    num_images: int = 0
    features_key: str = ""  # digest of all processed arrays: the encoder cache's key
    num_videos: int = 0
    features_keys: dict[str, str] = field(default_factory=dict)  # per kind ("image", "video"): a digest

    def arrays(self) -> dict[str, Any]:
        """Every array the vision side reads, as mx arrays (``pixel_values`` only with images)."""
        out = {k: (v if isinstance(v, mx.array) or v is None else mx.array(v)) for k, v in self.extra.items()}
        if self.pixel_values is not None:
            pv = self.pixel_values
            out["pixel_values"] = pv if isinstance(pv, mx.array) else mx.array(pv)
        return out


def arrays_hash(arrays: dict[str, Any]) -> str:
    """Digest of a processor's image arrays (pixel values and grids), in a worker thread."""
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def media_hash(blobs: list[bytes]) -> str:
    """One digest over every medium's decoded pixels, in order."""
    h = hashlib.blake2b(digest_size=16)
    for blob in blobs:
        h.update(len(blob).to_bytes(8, "little"))
        h.update(blob)
    return h.hexdigest()


def salted(salt: str | None, content_hash: str) -> str:
    """The cache salt of a request with media: block hashes then depend on the media,
    so different images never share KV blocks and the same image does."""
    return f"{salt or ''}\x00media:{content_hash}"


class LanguageModelAdapter(nn.Module):
    """Lets mlx-lm (``BatchGenerator``, ``make_prompt_cache``, cache policies) drive the
    language model of an mlx-vlm model: calls return the logits array (mlx-vlm returns an
    output object), ``input_embeddings`` is passed as mlx-vlm's ``inputs_embeds``, and
    ``args`` carries the text config under mlx-lm's attribute names."""

    def __init__(self, vlm: nn.Module, encode: Callable[..., mx.array] | None = None,
                 embed: Callable[..., Any] | None = None, video: bool = False):
        super().__init__()
        self.vlm = vlm  # a child module, so parameters() (the weights' size) includes the tower
        # encode(vlm, pixel_values, **extra) -> the image features get_input_embeddings takes as
        # ``cached_image_features``; given by the family plugin, it turns the encoder cache on
        self.encode = encode
        # embed(vlm, ids, mm, encoder_cache) -> what get_input_embeddings returns (inputs_embeds,
        # position_ids, rope_deltas, and for deepstack models visual_pos_masks and
        # deepstack_visual_embeds): a family that assembles its prompt embeddings itself
        self.embed = embed
        self.video = video  # the model takes video (pixel_values_videos)
        text = vlm.config.text_config
        self.args = SimpleNamespace(**{k: v for k, v in vars(text).items() if not k.startswith("_")})
        self.model_type = getattr(vlm.config, "model_type", "")

    @property
    def language_model(self) -> nn.Module:
        return self.vlm.language_model

    @property
    def layers(self) -> list:
        return self.language_model.layers

    def make_cache(self) -> list:
        lm = self.language_model
        if hasattr(lm, "make_cache"):
            return lm.make_cache()
        from mlx_lm.models.cache import KVCache

        return [KVCache() for _ in self.layers]

    @property
    def mrope(self) -> bool:
        """Qwen-VL style multimodal rotary positions (see ``core.mrope``)."""
        scaling = getattr(self.args, "rope_scaling", None) or {}
        # Qwen2/2.5-VL say type "mrope"; Qwen3-VL says "default" and gives the sections
        return isinstance(scaling, dict) and (scaling.get("type", scaling.get("rope_type")) == "mrope"
                                              or "mrope_section" in scaling)

    def __call__(self, inputs: mx.array, cache=None, input_embeddings: mx.array | None = None, **kwargs) -> mx.array:
        if self.mrope:
            return self.forward(inputs, cache, input_embeddings, positions_for(cache, inputs.shape[1]))
        return self.language_model(inputs, inputs_embeds=input_embeddings, cache=cache).logits

    def forward(self, inputs: mx.array, cache, embeds: mx.array | None, positions: mx.array,
                **visual: Any) -> mx.array:
        """An mRoPE language model run with explicit positions: mlx-vlm's own call keeps
        positions as model state (one batch-wide delta), which a shared batch cannot use.
        ``visual``: Qwen3-VL's deepstack inputs (``visual_pos_masks``,
        ``deepstack_visual_embeds``) for a prefill chunk."""
        lm = self.language_model
        h = lm.model(inputs, inputs_embeds=embeds, cache=cache, position_ids=positions, **visual)
        if getattr(lm.args, "tie_word_embeddings", False):
            return lm.model.embed_tokens.as_linear(h)
        return lm.lm_head(h)


def positions_for(cache: list | None, length: int) -> mx.array:
    from .mrope import BatchMRopeKVCache, single_positions

    c0 = cache[0] if cache else None
    if isinstance(c0, BatchMRopeKVCache):
        return c0.positions(length)
    if c0 is None:
        return mx.broadcast_to(mx.arange(length)[None, None], (3, 1, length))
    return single_positions(c0, length)


class EncoderCache:
    """Vision-encoder outputs by processed-image digest, least recently used out first,
    so an image sent again (a conversation that keeps sending it) is not re-encoded."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._items: OrderedDict[str, mx.array] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> mx.array | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return value

    def put(self, key: str, value: mx.array) -> None:
        self.misses += 1
        if self.max_entries <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class VisionPrefill:
    """Prefills one vision request's prompt into its caches (on the engine thread)."""

    def __init__(self, adapter: LanguageModelAdapter, step_size: int = 512, encoder_cache_size: int = 32):
        self.adapter = adapter
        self.step_size = step_size
        self.encoder_cache = EncoderCache(encoder_cache_size)

    def embeddings(self, tokens: list[int], mm: MultiModalInput) -> Any:
        vlm = self.adapter.vlm
        ids = mx.array(tokens)[None]
        if self.adapter.embed is not None:
            return self.adapter.embed(vlm, ids, mm, self.encoder_cache)
        arrays = mm.arrays()
        pixels = arrays.pop("pixel_values", None)
        encode, cache = self.adapter.encode, self.encoder_cache
        if encode is not None and mm.features_key and pixels is not None:
            features = cache.get(mm.features_key)
            if features is None:
                features = encode(vlm, pixels, **arrays)
                mx.eval(features)
                cache.put(mm.features_key, features)
            arrays["cached_image_features"] = features
        return vlm.get_input_embeddings(ids, pixels, mask=mx.ones(ids.shape, dtype=mx.int32), **arrays)

    def prefill(self, tokens: list[int], mm: MultiModalInput, caches: list[Any], start: int) -> int:
        """Run ``tokens[start:-1]`` through the language model from their input
        embeddings into ``caches`` (which already hold ``tokens[:start]``); returns how
        many tokens the caches hold now. The last token is left for the batch."""
        end = len(tokens) - 1
        if start >= end and not self.adapter.mrope:
            return start
        # (an mRoPE model needs its position delta even when the prefix cache held the
        # whole prompt; with the encoder cache that costs no second encoding)
        out = self.embeddings(tokens, mm)
        embeds = out.inputs_embeds
        ids = mx.array(tokens)[None]
        adapter, lm = self.adapter, self.adapter.language_model
        positions = getattr(out, "position_ids", None) if adapter.mrope else None
        if adapter.mrope:
            if positions is None:
                raise ValueError("the model gave no multimodal rotary positions")
            delta = int(out.rope_deltas.reshape(-1)[0].item())
            for c in caches:
                c.rope_delta = delta  # read by core.mrope when the request joins the batch
        deepstack = DeepstackInputs.of(out)
        for s in range(start, end, self.step_size):
            e = min(s + self.step_size, end)
            if positions is not None:
                adapter.forward(ids[:, s:e], caches, embeds[:, s:e], positions[..., s:e],
                                **(deepstack.chunk(s, e) if deepstack else {}))
            else:
                lm(ids[:, s:e], inputs_embeds=embeds[:, s:e], cache=caches)
            mx.eval([c.state for c in caches])
        return end


class DeepstackInputs:
    """Qwen3-VL's deepstack: visual features of early vision-tower layers added to the
    hidden states of the first decoder layers at the visual tokens' positions. One
    request's, for a prefill chunk at a time (mlx-vlm's batched prefill gets the rows
    after the first wrong; prefilling each request on its own avoids that)."""

    def __init__(self, mask: mx.array, embeds: list[mx.array]):
        import numpy as np

        self.mask = mask  # (1, L) bool: visual tokens
        self.columns = np.flatnonzero(np.array(mask[0]))  # their positions, in order (rows of embeds)
        self.embeds = embeds  # per layer: (number of visual tokens, hidden)

    @classmethod
    def of(cls, out: Any) -> "DeepstackInputs | None":
        embeds = getattr(out, "deepstack_visual_embeds", None)
        mask = getattr(out, "visual_pos_masks", None)
        if embeds is None or mask is None or len(embeds) == 0:
            return None
        return cls(mask, list(embeds))

    def chunk(self, start: int, end: int) -> dict[str, Any]:
        import numpy as np

        rows = np.flatnonzero((self.columns >= start) & (self.columns < end))
        if rows.size == 0:
            return {}
        index = mx.array(rows, dtype=mx.uint32)
        return {"visual_pos_masks": self.mask[:, start:end],
                "deepstack_visual_embeds": [layer[index] for layer in self.embeds]}
