"""vllm-mlx: a vLLM-class OpenAI-compatible inference server built on MLX."""

from ._blas import preload_openblas

__version__ = "0.1.0"

preload_openblas()
