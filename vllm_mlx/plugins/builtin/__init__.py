"""Built-in plugins. Each is registered through the same hooks as third-party ones.

One module per model family, plus the generic mlx-lm loader and cache policies.
"""

BUILTIN_MODULES = [
    "vllm_mlx.plugins.builtin.mlx_lm_loader",
    "vllm_mlx.plugins.builtin.embeddings",
    "vllm_mlx.plugins.builtin.qwen3",
    "vllm_mlx.plugins.builtin.deepseek",
    "vllm_mlx.plugins.builtin.gemma3",
    "vllm_mlx.plugins.builtin.qwen_vl",
    "vllm_mlx.plugins.builtin.llama",
    "vllm_mlx.plugins.builtin.mistral",
    "vllm_mlx.plugins.builtin.kokoro",
    "vllm_mlx.plugins.builtin.whisper",
    "vllm_mlx.plugins.builtin.mlx_audio",
    "vllm_mlx.plugins.builtin.cache_policies",
]
