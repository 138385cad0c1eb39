"""Random-weight, real-format folders of the speech families served through the generic
mlx-audio loaders (TTS: Chatterbox, VibeVoice, VoxCPM; STT: Moonshine), built from
mlx-audio's own model classes with small configs, plus the config and tokenizer files
their loaders read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPECIALS = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "<|endoftext|>", "<s>", "</s>"]


def byte_tokenizer(out: Path, *, hf: bool = True) -> int:
    """A byte-level tokenizer (256 byte tokens, no merges, a few specials): what the
    families' text front ends (tokenizers / transformers AutoTokenizer) load."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(out / "tokenizer.json"))
    if hf:
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "bos_token": "<s>",
            "unk_token": "[UNK]", "pad_token": "[PAD]", "model_max_length": 4096}))
    return tok.get_vocab_size()


def _save(out: Path, weights: dict, config: dict) -> Path:
    import mlx.core as mx

    mx.save_safetensors(str(out / "model.safetensors"), weights)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


VOXCPM = {
    "model_type": "voxcpm",
    "lm_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 128, "vocab_size": 0, "rope_scaling": {"type": "longrope",
                  "long_factor": [1.0] * 8, "short_factor": [1.0] * 8, "original_max_position_embeddings": 4096},
                  "max_position_embeddings": 4096, "scale_emb": 12, "dim_model_base": 64},
    "encoder_config": {"hidden_dim": 64, "ffn_dim": 128, "num_heads": 4, "num_layers": 1},
    "dit_config": {"hidden_dim": 64, "ffn_dim": 128, "num_heads": 4, "num_layers": 1,
                   "cfm_config": {"sigma_min": 1e-6, "solver": "euler", "t_scheduler": "log-norm",
                                  "inference_cfg_rate": 2.0}},
    "audio_vae_config": {"encoder_dim": 16, "encoder_rates": [2, 4], "latent_dim": 16, "decoder_dim": 32,
                         "decoder_rates": [4, 2], "sample_rate": 16000},
    "patch_size": 2, "feat_dim": 16, "scalar_quantization_latent_dim": 32, "scalar_quantization_scale": 9,
    "residual_lm_num_layers": 1, "max_length": 512,
}


def build_voxcpm(out: Path, seed: int = 0) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.voxcpm.config import ModelArgs
    from mlx_audio.tts.models.voxcpm.voxcpm import Model

    out.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(VOXCPM))
    config["lm_config"]["vocab_size"] = byte_tokenizer(out)
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(json.loads(json.dumps(config))))
    return _save(out, dict(tree_flatten(model.parameters())), config)


VIBEVOICE = {
    "model_type": "vibevoice_streaming", "sample_rate": 24000, "acoustic_vae_dim": 16, "semantic_vae_dim": 16,
    "tts_backbone_num_hidden_layers": 1,
    "decoder_config": {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 0,
                       "max_position_embeddings": 2048, "head_dim": 16},
    "acoustic_tokenizer_config": {"vae_dim": 16, "encoder_n_filters": 8, "decoder_n_filters": 8,
                                  "encoder_ratios": [4, 2], "encoder_depths": "1-1-1"},
    "diffusion_head_config": {"hidden_size": 64, "head_layers": 1, "latent_size": 16, "speech_vae_dim": 16,
                              "ddpm_num_inference_steps": 2},
}


def build_vibevoice(out: Path, seed: int = 0, voices: tuple[str, ...] = ("alice",)) -> Path:
    """A streaming VibeVoice; each voice is a voice-cache file (the key/value caches and
    hidden states of a short spoken prompt, here random) in ``voices/``."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.vibevoice.config import ModelConfig
    from mlx_audio.tts.models.vibevoice.vibevoice import Model

    out.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(VIBEVOICE))
    config["decoder_config"]["vocab_size"] = byte_tokenizer(out)
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(json.loads(json.dumps(config))))
    (out / "voices").mkdir(exist_ok=True)
    dec = config["decoder_config"]
    lm_layers = dec["num_hidden_layers"] - config["tts_backbone_num_hidden_layers"]
    tts_layers = config["tts_backbone_num_hidden_layers"]
    for i, name in enumerate(voices):
        mx.random.seed(seed + 100 + i)
        seq, kv = 6, (1, dec["num_key_value_heads"], 6, dec["head_dim"])
        cache = {"lm_hidden": mx.random.normal((1, seq, dec["hidden_size"])),
                 "tts_lm_hidden": mx.random.normal((1, seq, dec["hidden_size"])),
                 "neg_tts_lm_hidden": mx.random.normal((1, seq, dec["hidden_size"]))}
        for prefix, layers in (("lm", lm_layers), ("tts_lm", tts_layers), ("neg_tts_lm", tts_layers)):
            for layer in range(layers):
                cache[f"{prefix}_key_{layer}"] = mx.random.normal(kv) * 0.1
                cache[f"{prefix}_value_{layer}"] = mx.random.normal(kv) * 0.1
        mx.save_safetensors(str(out / "voices" / f"{name}.safetensors"), cache)
    return _save(out, dict(tree_flatten(model.parameters())), config)


CHATTERBOX = {
    "model_type": "chatterbox",
    "t3_config": {"llama_config_name": "vllm_mlx_test_tiny", "speech_cond_prompt_len": 8,
                  "use_perceiver_resampler": False},
    # the T3 backbone's own config (vllm-mlx reads it; mlx-audio's table has only the 520M one)
    "t3_llama_config": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
                        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16},
}
S3_TOKENIZER = {"n_mels": 128, "n_audio_state": 128, "n_audio_head": 2, "n_audio_layer": 1}  # head size 64 is fixed


def build_chatterbox(out: Path, seed: int = 0, clip: np.ndarray | None = None) -> Path:
    """A Chatterbox with a small T3 (text -> speech tokens) and a small S3 speech tokenizer
    (``s3_tokenizer/``). S3Gen (speech tokens -> audio, ~150M parameters) has no config in
    mlx-audio; its weights are left out of the folder (Chatterbox loads its components
    non-strictly), so it keeps its random initial values. ``conds.safetensors``, the
    default voice, is made from ``clip`` by the model's own voice-cloning code."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.chatterbox.chatterbox import Model
    from mlx_audio.tts.models.chatterbox.config import LLAMA_CONFIGS, ModelConfig
    from mlx_audio.tts.models.chatterbox.s3tokenizer import ModelConfig as S3Config
    from mlx_audio.tts.models.chatterbox.s3tokenizer import S3TokenizerV2

    out.mkdir(parents=True, exist_ok=True)
    byte_tokenizer(out, hf=False)
    config = json.loads(json.dumps(CHATTERBOX))
    name = config["t3_config"]["llama_config_name"]
    LLAMA_CONFIGS.setdefault(name, {**LLAMA_CONFIGS["Llama_520M"], **config["t3_llama_config"]})
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(config))
    model.eval()
    (out / "s3_tokenizer").mkdir(exist_ok=True)
    s3 = S3TokenizerV2("speech_tokenizer_v2_25hz", S3Config(**S3_TOKENIZER))
    mx.save_safetensors(str(out / "s3_tokenizer" / "model.safetensors"), dict(tree_flatten(s3.parameters())))
    (out / "s3_tokenizer" / "config.json").write_text(json.dumps(S3_TOKENIZER))
    model._s3_tokenizer = s3
    weights = {f"{part}.{k}": v for part in ("t3", "ve")
               for k, v in tree_flatten(getattr(model, part).parameters())}
    _save(out, weights, config)
    if clip is None:
        t = np.arange(12000) / 24000
        clip = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    conds = model.prepare_conditionals(mx.array(clip), 24000)
    saved = {"t3.speaker_emb": conds.t3.speaker_emb, "t3.emotion_adv": conds.t3.emotion_adv,
             "t3.cond_prompt_speech_tokens": conds.t3.cond_prompt_speech_tokens,
             **{f"gen.{k}": v for k, v in conds.gen.items() if isinstance(v, mx.array)}}
    mx.save_safetensors(str(out / "conds.safetensors"), saved)
    return out


MOONSHINE = {"model_type": "moonshine", "hidden_size": 64, "intermediate_size": 128, "encoder_num_hidden_layers": 1,
             "decoder_num_hidden_layers": 1, "encoder_num_attention_heads": 4, "decoder_num_attention_heads": 4,
             "max_position_embeddings": 256, "bos_token_id": 6, "eos_token_id": 7, "decoder_start_token_id": 6,
             "tie_word_embeddings": True}


def build_moonshine(out: Path, seed: int = 0) -> Path:
    """A Moonshine speech-to-text model; conv weights saved in the checkpoints' PyTorch
    layout, as mlx-audio's ``sanitize`` expects."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.stt.models.moonshine.config import ModelConfig
    from mlx_audio.stt.models.moonshine.moonshine import Model

    out.mkdir(parents=True, exist_ok=True)
    config = {**MOONSHINE, "vocab_size": byte_tokenizer(out)}
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(config))
    weights = {k: (mx.transpose(v, (0, 2, 1)) if "conv" in k and "weight" in k and v.ndim == 3 else v)
               for k, v in tree_flatten(model.parameters())}
    return _save(out, weights, config)
