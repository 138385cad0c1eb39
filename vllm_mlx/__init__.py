"""vllm-mlx: a vLLM-class OpenAI-compatible inference server built on MLX."""

__version__ = "0.1.0"
