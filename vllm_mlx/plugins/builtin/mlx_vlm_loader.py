"""Loading vision-language models through mlx-vlm (``pip install 'vllm-mlx[vision]'``).

Family plugins (``gemma3``, ``qwen_vl``) detect their folders and call
``load_with_mlx_vlm``; a third-party plugin adds a family the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..interfaces import LoadedModel


def has_vision_tower(config: dict) -> bool:
    return isinstance(config.get("vision_config"), dict)


def mlx_vlm_installed() -> bool:
    return importlib.util.find_spec("mlx_vlm") is not None


def load_with_mlx_vlm(path: Path, config: dict, loader_name: str, encode: Any = None, embed: Any = None,
                      video: bool = False, **options: Any) -> LoadedModel:
    """The model as the engine runs it (``core.vision.LanguageModelAdapter`` around the
    mlx-vlm model), mlx-lm's tokenizer wrapper (so text handling is the same as for
    text models) and the model's processor (which expands image placeholders and
    turns pictures into pixel values). ``encode(vlm, pixel_values, **arrays)``, if the
    family gives one, returns the image features its ``get_input_embeddings`` accepts
    as ``cached_image_features``: then repeated images are not re-encoded. A family
    that assembles the prompt embeddings itself gives ``embed`` instead (see
    ``core.vision.LanguageModelAdapter``); ``video``: the model takes ``video_url`` parts."""
    if not mlx_vlm_installed():
        raise RuntimeError("vision models need mlx-vlm: pip install 'vllm-mlx[vision]'")
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_vlm.utils import load

    from ...core.vision import LanguageModelAdapter

    vlm, processor = load(str(path))
    eos = config.get("eos_token_id") or config.get("text_config", {}).get("eos_token_id")
    eos = [eos] if isinstance(eos, int) else eos
    tokenizer = load_tokenizer(path, eos_token_ids=eos or None)
    _adopt_chat_template(tokenizer, processor)
    text = config.get("text_config", {})
    ctx = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    return LoadedModel(
        model=LanguageModelAdapter(vlm, encode, embed=embed, video=video),
        tokenizer=tokenizer,
        kind="mllm",
        processor=processor,
        config=config,
        path=path,
        loader=loader_name,
        context_length=ctx if isinstance(ctx, int) and 0 < ctx < 10**8 else None,
    )


def _adopt_chat_template(tokenizer: Any, processor: Any) -> None:
    """Hub vision checkpoints often keep the chat template in chat_template.json, which
    the processor reads and the tokenizer does not: give the tokenizer the processor's."""
    if getattr(tokenizer._tokenizer, "chat_template", None) is not None:
        return
    template = getattr(processor, "chat_template", None) or getattr(getattr(processor, "tokenizer", None),
                                                                    "chat_template", None)
    if isinstance(template, str):
        tokenizer._tokenizer.chat_template = template
        tokenizer.has_chat_template = True
