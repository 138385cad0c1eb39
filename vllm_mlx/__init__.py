"""vllm-mlx: a vLLM-class OpenAI-compatible inference server built on MLX.

``from vllm_mlx import LLM, SamplingParams`` gives the in-process Python API
(``AsyncLLM`` for asyncio apps); they load lazily, so ``import vllm_mlx`` stays
cheap for the command line.
"""

from ._blas import preload_openblas

__version__ = "0.1.0"

preload_openblas()

_LAZY = {"LLM": "llm", "AsyncLLM": "llm", "RequestOutput": "llm", "CompletionOutput": "llm",
         "SamplingParams": "core"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vllm_mlx' has no attribute {name!r}")


__all__ = ["LLM", "AsyncLLM", "CompletionOutput", "RequestOutput", "SamplingParams", "__version__"]
