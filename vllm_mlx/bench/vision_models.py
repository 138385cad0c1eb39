"""Random-weight vision-language model folders for ``bench vision`` (no hub, no torch).

Built the way the tests build theirs (``tests/vision_models.py``): mlx-vlm's own
model classes from a config, weights saved under mlx-vlm's names, a ``tokenizers``
BPE tokenizer with the family's special tokens, processor configs and a chat
template, so the folder loads through our loader and through ``mlx_vlm.server``
alike. Two sizes: ``bench`` keeps the proportions that matter for the targets
(256 image tokens per picture like Gemma 3, an image encoder that costs more than
the text around it) while staying quick on a CPU; ``tiny`` is for the test that
runs the command.
"""

from __future__ import annotations

import json
from pathlib import Path

from .prompts import WORDS

# (text hidden, text layers, vision hidden, vision layers, image side in pixels, image tokens)
SIZES = {
    "bench": dict(hidden=384, layers=6, heads=6, v_hidden=384, v_layers=6, image=448, tokens=256),
    "tiny": dict(hidden=64, layers=2, heads=4, v_hidden=32, v_layers=1, image=56, tokens=4),
}

GEMMA3_SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                  "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_VL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


def _tokenizer(out: Path, special: list[str], vocab: int) -> dict[str, int]:
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) + ". What is in this picture? Describe it."
              for _ in range(400)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(out / "tokenizer.json"))
    return {t: tok.token_to_id(t) for t in special} | {"__size__": tok.get_vocab_size()}


def _save(model, out: Path, config: dict) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    # a scaled-up output head keeps random logits away from ties (stable greedy picks)
    weights = {k: (v * 4.0 if k == "language_model.lm_head.weight" else v) for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=1))


def build_gemma3(out: Path, size: str = "bench", seed: int = 0) -> Path:
    """A random Gemma 3 with a SigLIP tower: ``bench``: 448x448 pictures, 1024 patches pooled to 256
    image tokens; ``tiny``: 56x56, 4 tokens."""
    import mlx.core as mx
    from mlx_vlm.models import gemma3

    s = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, GEMMA3_SPECIAL, 1000)
    tokens = s["tokens"]
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "model_max_length": 8192,
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>",
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
        "chat_template": GEMMA3_TEMPLATE}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": GEMMA3_TEMPLATE}))
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Gemma3Processor",
                                                           "image_seq_length": tokens}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Gemma3ImageProcessor", "processor_class": "Gemma3Processor",
        "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True,
        "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": tokens, "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": s["image"], "width": s["image"]}}))
    eos = [ids["<eos>"], ids["<end_of_turn>"]]
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    text = {"model_type": "gemma3_text", "hidden_size": s["hidden"], "num_hidden_layers": s["layers"],
            "intermediate_size": 4 * s["hidden"], "num_attention_heads": s["heads"], "num_key_value_heads": 2,
            "head_dim": 64 if size == "bench" else 16, "query_pre_attn_scalar": 64 if size == "bench" else 16,
            "vocab_size": ids["__size__"], "sliding_window": 512, "sliding_window_pattern": 6 if size == "bench" else 2,
            "rms_norm_eps": 1e-6, "mm_tokens_per_image": tokens, "max_position_embeddings": 8192}
    vision = {"model_type": "siglip_vision_model", "hidden_size": s["v_hidden"], "num_hidden_layers": s["v_layers"],
              "intermediate_size": 4 * s["v_hidden"], "num_attention_heads": max(2, s["v_hidden"] // 64),
              "patch_size": 14, "image_size": s["image"], "layer_norm_eps": 1e-6}
    config = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
              "text_config": text, "vision_config": vision, "image_token_index": ids["<image_soft_token>"],
              "boi_token_index": ids["<start_of_image>"], "eoi_token_index": ids["<end_of_image>"],
              "mm_tokens_per_image": tokens, "pad_token_id": ids["<pad>"], "eos_token_id": eos,
              "torch_dtype": "float32"}
    mx.random.seed(seed)
    model_config = gemma3.ModelConfig.from_dict(config)
    model_config.text_config = gemma3.TextConfig.from_dict(text)
    model_config.vision_config = gemma3.VisionConfig.from_dict(vision)
    model = gemma3.Model(model_config)
    proj = model.multi_modal_projector  # mlx-vlm initialises it to ones; random values make pictures matter
    proj.mm_input_projection_weight = mx.random.normal(proj.mm_input_projection_weight.shape) * 0.5
    _save(model, out, config)
    return out


def build_qwen2_5_vl(out: Path, size: str = "bench", seed: int = 0) -> Path:
    """A random Qwen2.5-VL: ``bench``: pictures resized to 448x448 (1024 patches merged to 256 image
    tokens); ``tiny``: 112x112 (16 tokens)."""
    import mlx.core as mx
    from mlx_vlm.models import qwen2_5_vl

    s = SIZES[size]
    side = s["image"] if size == "bench" else 112
    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, QWEN_SPECIAL, 1000)
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 8192, "chat_template": QWEN_VL_TEMPLATE,
        "extra_special_tokens": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                 "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_VL_TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": side * side, "max_pixels": side * side, "merge_size": 2, "patch_size": 14,
        "temporal_patch_size": 2, "resample": 3, "rescale_factor": 1 / 255}))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["<|im_end|>"]]}))
    vision = {"model_type": "qwen2_5_vl", "depth": s["v_layers"], "hidden_size": s["v_hidden"],
              "intermediate_size": 4 * s["v_hidden"], "out_hidden_size": s["hidden"],
              "num_heads": max(2, s["v_hidden"] // 64), "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "window_size": 112 if size == "bench" else 56,
              "fullatt_block_indexes": [s["v_layers"] - 1], "in_chans": 3}
    head_dim = s["hidden"] // s["heads"]
    half = head_dim // 2
    section = [half // 2, half // 4, half - half // 2 - half // 4]
    config = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
              "hidden_size": s["hidden"], "num_hidden_layers": s["layers"], "intermediate_size": 4 * s["hidden"],
              "num_attention_heads": s["heads"], "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
              "vocab_size": ids["__size__"], "max_position_embeddings": 8192, "rope_theta": 10000.0,
              "rope_scaling": {"type": "mrope", "mrope_section": section}, "tie_word_embeddings": False,
              "vision_config": vision, "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
              "vision_token_id": ids["<|vision_pad|>"], "eos_token_id": ids["<|im_end|>"], "torch_dtype": "float32"}
    mx.random.seed(seed)
    model_config = qwen2_5_vl.ModelConfig.from_dict(dict(config))
    model_config.text_config = qwen2_5_vl.TextConfig.from_dict(model_config.text_config)
    model_config.vision_config = qwen2_5_vl.VisionConfig.from_dict(vision)
    model = qwen2_5_vl.Model(model_config)
    _save(model, out, config)
    return out


BUILDERS = {"gemma3": build_gemma3, "qwen2_5_vl": build_qwen2_5_vl}


def make_picture(seed: int, side: int = 448) -> bytes:
    """A PNG with seeded coloured rectangles (real pixels, each seed a different picture)."""
    import io
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(side), rng.randrange(side)
        draw.rectangle([x0, y0, x0 + rng.randrange(20, side // 2), y0 + rng.randrange(20, side // 2)],
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
