"""Random-weight vision-language model folders in the real hub format (no hub, no torch).

mlx-vlm's own model classes are built from a tiny config and their weights saved
under mlx-vlm's names, next to a ``tokenizers`` tokenizer holding the family's
special tokens, the processor configs and a chat template, so tests load the
folder through the project's loader and through ``mlx_vlm.load`` alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_factory import CORPUS

GEMMA3_SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                  "<start_of_image>", "<end_of_image>", "<image_soft_token>"]

# Gemma 3's template, cut down to what the tests use: a system turn folded into the
# first user turn, text and image parts, the generation prompt.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] if messages[0]['content'] is string "
    "else messages[0]['content'][0]['text'] -%}{%- set first_user_prefix = first_user_prefix + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _tokenizer(out: Path, special: list[str], vocab: int) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(str(out / "tokenizer.json"))
    return {t: tok.token_to_id(t) for t in special} | {"__size__": tok.get_vocab_size()}


def _save(model, out: Path, config: dict, head_key: str) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    # A scaled-up output head keeps random logits away from ties (stable greedy picks).
    weights = {k: (v * 4.0 if k == head_key else v) for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=1))


def build_gemma3_vision(out: Path, *, seed: int = 0, image_size: int = 56, patch: int = 14,
                        tokens_per_image: int = 4) -> Path:
    """A tiny Gemma 3 with a SigLIP tower: 56x56 images, 4 image tokens each."""
    import mlx.core as mx
    from mlx_vlm.models import gemma3

    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, GEMMA3_SPECIAL, 600)
    vocab = ids["__size__"]
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096,
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>",
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
        "chat_template": GEMMA3_TEMPLATE}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": GEMMA3_TEMPLATE}))
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "Gemma3Processor", "image_seq_length": tokens_per_image}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Gemma3ImageProcessor", "processor_class": "Gemma3Processor",
        "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True,
        "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": tokens_per_image, "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
        "pan_and_scan_max_num_crops": 4, "pan_and_scan_min_crop_size": 16,
        "pan_and_scan_min_ratio_to_activate": 1.2}))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]]}))
    text = {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
            "vocab_size": vocab, "sliding_window": 512, "sliding_window_pattern": 2, "rms_norm_eps": 1e-6,
            "mm_tokens_per_image": tokens_per_image, "max_position_embeddings": 4096}
    vision = {"model_type": "siglip_vision_model", "hidden_size": 32, "num_hidden_layers": 1,
              "intermediate_size": 64, "num_attention_heads": 2, "patch_size": patch, "image_size": image_size,
              "layer_norm_eps": 1e-6}
    config = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
              "text_config": text, "vision_config": vision, "image_token_index": ids["<image_soft_token>"],
              "boi_token_index": ids["<start_of_image>"], "eoi_token_index": ids["<end_of_image>"],
              "mm_tokens_per_image": tokens_per_image, "pad_token_id": ids["<pad>"],
              "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]], "torch_dtype": "float32"}
    mx.random.seed(seed)
    model_config = gemma3.ModelConfig.from_dict(config)
    model_config.text_config = gemma3.TextConfig.from_dict(text)
    model_config.vision_config = gemma3.VisionConfig.from_dict(vision)
    model = gemma3.Model(model_config)
    # mlx-vlm initialises the projection to ones; random values make images matter.
    proj = model.multi_modal_projector
    proj.mm_input_projection_weight = mx.random.normal(proj.mm_input_projection_weight.shape) * 0.5
    _save(model, out, config, "language_model.lm_head.weight")
    return out


def make_image(path: Path | None = None, *, color=(200, 30, 40), size=(64, 48), fmt: str = "PNG") -> bytes:
    """A small picture: a coloured background with a contrasting square (real pixels, not noise)."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2],
                                  fill=tuple(255 - c for c in color))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's template, cut down: text, image and video parts, the generation prompt.
QWEN_VL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


def build_qwen2_5_vl(out: Path, *, seed: int = 0, pixels: int = 112 * 112, video_pixels: int = 56 * 56) -> Path:
    """A tiny Qwen2.5-VL: pictures resized to 112x112 pixels, 16 image tokens each (a 4x4 grid:
    its rotary positions span 4, so the sequence's position delta is -12 per image); video
    frames to 56x56, 4 tokens per pair of frames."""
    import mlx.core as mx
    from mlx_vlm.models import qwen2_5_vl

    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, QWEN_SPECIAL, 600)
    vocab = ids["__size__"]
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 4096, "chat_template": QWEN_VL_TEMPLATE,
        "extra_special_tokens": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                 "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_VL_TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": pixels, "max_pixels": pixels, "merge_size": 2, "patch_size": 14, "temporal_patch_size": 2,
        "resample": 3, "rescale_factor": 1 / 255}))
    _video_config(out, 14, video_pixels)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["<|im_end|>"]]}))
    vision = {"model_type": "qwen2_5_vl", "depth": 2, "hidden_size": 32, "intermediate_size": 64,
              "out_hidden_size": 64, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1], "in_chans": 3}
    config = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
              "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": vocab, "max_position_embeddings": 4096,
              "rope_theta": 10000.0, "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
              "tie_word_embeddings": False, "vision_config": vision,
              "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
              "vision_token_id": ids["<|vision_pad|>"], "eos_token_id": ids["<|im_end|>"],
              "torch_dtype": "float32"}
    mx.random.seed(seed)
    model_config = qwen2_5_vl.ModelConfig.from_dict(dict(config))
    model_config.text_config = qwen2_5_vl.TextConfig.from_dict(model_config.text_config)
    model_config.vision_config = qwen2_5_vl.VisionConfig.from_dict(vision)
    model = qwen2_5_vl.Model(model_config)
    _save(model, out, config, "language_model.lm_head.weight")
    return out


def _video_config(out: Path, patch: int, pixels: int) -> None:
    (out / "video_preprocessor_config.json").write_text(json.dumps({
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "min_pixels": pixels, "max_pixels": pixels,
        "merge_size": 2, "patch_size": patch, "temporal_patch_size": 2, "fps": 2, "min_frames": 2,
        "max_frames": 64, "rescale_factor": 1 / 255}))


def build_qwen3_vl(out: Path, *, seed: int = 0, pixels: int = 64 * 64, video_pixels: int = 64 * 64,
                   moe: bool = False) -> Path:
    """A tiny Qwen3-VL with deepstack (features of vision layers 0 and 1 added after the
    first two decoder layers): pictures and video frames resized to 64x64 pixels, 4 tokens
    per image and per pair of frames (each pair under its own ``<t seconds>`` marker).
    ``moe``: Qwen3-VL MoE (4 experts, 2 per token, in every decoder layer)."""
    import importlib

    import mlx.core as mx

    family = "qwen3_vl_moe" if moe else "qwen3_vl"
    module = importlib.import_module(f"mlx_vlm.models.{family}")

    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, QWEN_SPECIAL, 600)
    vocab = ids["__size__"]
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 4096, "chat_template": QWEN_VL_TEMPLATE,
        "extra_special_tokens": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                 "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_VL_TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "size": {"shortest_edge": pixels, "longest_edge": pixels}, "merge_size": 2, "patch_size": 16,
        "temporal_patch_size": 2, "resample": 3, "rescale_factor": 1 / 255}))
    _video_config(out, 16, video_pixels)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["<|im_end|>"]]}))
    text = {"model_type": f"{family}_text", "hidden_size": 64, "num_hidden_layers": 3, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
            "vocab_size": vocab, "rope_theta": 10000.0, "max_position_embeddings": 4096,
            "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True},
            "tie_word_embeddings": False, "attention_bias": False, "eos_token_id": ids["<|im_end|>"]}
    if moe:
        text |= {"num_experts": 4, "num_experts_per_tok": 2, "decoder_sparse_step": 1, "mlp_only_layers": [],
                 "moe_intermediate_size": 32, "norm_topk_prob": True}
    vision = {"model_type": family, "depth": 3, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
              "out_hidden_size": 64, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 1], "in_channels": 3}
    config = {"model_type": family,
              "architectures": ["Qwen3VLMoeForConditionalGeneration" if moe else "Qwen3VLForConditionalGeneration"],
              "text_config": text, "vision_config": vision, "tie_word_embeddings": False,
              "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
              "eos_token_id": ids["<|im_end|>"], "torch_dtype": "float32"}
    mx.random.seed(seed)
    model = module.Model(module.ModelConfig.from_dict(dict(config)))
    _save(model, out, config, "language_model.lm_head.weight")
    return out


def make_video(path: Path | None = None, *, frames: int = 16, fps: int = 8, size=(64, 48),
               colors=((200, 30, 40), (20, 180, 60)), codec: str = "mpeg4") -> bytes:
    """A short mp4 made with PyAV: a square moving across a background whose colour
    changes halfway (real motion, so the frames differ)."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.empty((size[1], size[0], 3), dtype=np.uint8)
            img[:] = colors[0] if i < frames // 2 else colors[1]
            x = (i * (size[0] - 16)) // max(frames - 1, 1)
            img[size[1] // 4: size[1] // 4 + 16, x: x + 16] = (240, 240, 240)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data
