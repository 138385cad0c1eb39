"""``build_state`` for an embedding model: the embedding engine instead of the generation one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .core.embedding_engine import AsyncEmbedder, EmbeddingEngine
from .plugins.interfaces import LoadedModel
from .server import ServerSettings, ServerState

if TYPE_CHECKING:
    from .serving import ServeOptions

log = logging.getLogger("vllm_mlx")

MAX_BATCH_TOKENS = 8192  # tokens per forward pass (rows x longest input, padding included)


def build_embedding_state(opts: "ServeOptions", loaded: LoadedModel, device=None) -> ServerState:
    context = loaded.context_length or 4096
    max_model_len = min(opts.max_model_len, context) if opts.max_model_len else context
    if hasattr(loaded.model, "chunk_tokens"):  # DecoderEmbedder: long inputs run in chunks of this size
        loaded.model.chunk_tokens = opts.prefill_step_size
    engine = EmbeddingEngine(loaded.model, loaded.tokenizer, max_batch_tokens=MAX_BATCH_TOKENS,
                             max_batch_size=opts.max_num_seqs, device=device,
                             name=opts.served_model_name or opts.model or "embed").start()
    name = opts.served_model_name or opts.model or str(loaded.path)
    settings = ServerSettings(
        served_model_name=name,
        api_key=opts.api_key,
        max_model_len=max_model_len,
        cache_policy="none",
        max_num_seqs=opts.max_num_seqs,
        max_queue=opts.max_queue,
        allowed_origins=tuple(opts.allowed_origins),
        default_chat_template_kwargs=dict(opts.default_chat_template_kwargs),
        aliases=tuple(a for a in {opts.model, str(loaded.path)} if a and a != name),
    )
    log.info("embedding model %s (%s loader), context %d, %d dimensions", name, loaded.loader, max_model_len,
             loaded.model.dimensions)
    return ServerState(engine=AsyncEmbedder(engine), loaded=loaded, settings=settings)
