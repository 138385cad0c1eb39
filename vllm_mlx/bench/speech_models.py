"""Random-weight, real-format speech model folders (Whisper, Kokoro) built offline from
mlx-audio's own model classes: what the tests and ``vllm-mlx bench speech`` serve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WHISPER_DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 1,
                "n_vocab": 51865, "n_text_ctx": 64, "n_text_state": 64, "n_text_head": 2, "n_text_layer": 1}


def whisper_tokenizer(out: Path, n_vocab: int) -> None:
    """A byte-level BPE vocabulary laid out like Whisper's multilingual one: 50,257 text
    tokens, then <|endoftext|>, <|startoftranscript|>, 99 languages, the task and control
    tokens, and the 1,501 timestamp tokens <|0.00|>..<|30.00|> (decoding reads timestamps
    from these ids, so they must all exist)."""
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    while len(vocab) < 50257:
        vocab[f"w{len(vocab)}"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in list(LANGUAGES)[:99]],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                "<|notimestamps|>", *[f"<|{i * 0.02:.2f}|>" for i in range(1501)]]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert tok.get_vocab_size() == n_vocab, tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 1024}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80, "sampling_rate": 16000,
        "hop_length": 160, "chunk_length": 30, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
        "processor_class": "WhisperProcessor"}))


# The benchmark's Whisper: real windows (1,500 frames, 448 text tokens), 4 encoder layers, and a
# decoder whose one-token step costs about a quarter of the bench LLM's (29M-parameter) decode step:
# the proportion of whisper-large-v3-turbo (4 decoder layers) next to an 8B chat model.
BENCH_WHISPER_DIMS = {**WHISPER_DIMS, "n_audio_state": 128, "n_audio_head": 2, "n_audio_layer": 4,
                      "n_text_ctx": 448, "n_text_state": 128, "n_text_head": 2, "n_text_layer": 2}


def build_whisper(out: Path, seed: int = 0, dims: dict | None = None) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.stt.models.whisper.whisper import Model, ModelDimensions

    out.mkdir(parents=True, exist_ok=True)
    dims = dims or WHISPER_DIMS
    whisper_tokenizer(out, dims["n_vocab"])
    mx.random.seed(seed)
    model = Model(ModelDimensions(**dims), dtype=mx.float32)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (out / "config.json").write_text(json.dumps({"model_type": "whisper", **dims}, indent=1))
    return out


KOKORO_PHONEMES = "$;:,.!?—… \"()“” ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ"
KOKORO_VOICES = ("af_heart", "bf_emma", "ef_dora", "ff_siwis")


def kokoro_config() -> dict:
    vocab = {ch: i + 1 for i, ch in enumerate(dict.fromkeys(KOKORO_PHONEMES))}
    return {
        "model_type": "kokoro",
        "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                     "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 1, 1], [1, 1, 1]],
                     "resblock_kernel_sizes": [3, 7], "upsample_initial_channel": 512},
        "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 4, "multispeaker": True,
        "n_layer": 1, "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
        "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.1},
        "vocab": vocab,
    }


def build_kokoro(out: Path, seed: int = 0) -> Path:
    """Kokoro's decoder has fixed widths (512/1024 channels), so only the rest is shrunk.
    Weights saved in the hub checkpoint's layout: mlx-audio's ``sanitize`` transposes some
    convolution weights when loading, so those are stored transposed here."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.kokoro.kokoro import Model, ModelConfig

    out.mkdir(parents=True, exist_ok=True)
    config = kokoro_config()
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(config))
    params = dict(tree_flatten(model.parameters()))
    # weight-normed layers start at magnitude 1, which random directions compound layer after layer
    # into inf/NaN at the generator's final exp(): start them small
    # (the last one, before exp(), smallest of all: random instance norms amplify a lot)
    params = {k: v * (1e-6 if "conv_post" in k else 0.2) if k.endswith("weight_g") else v
              for k, v in params.items()}
    stored = {}
    for key, value in params.items():
        loaded = model.sanitize({key: value}).get(key, value)
        stored[key] = value.transpose(0, 2, 1) if loaded.shape != value.shape else value
    assert all(model.sanitize(stored)[k].shape == v.shape for k, v in params.items())
    mx.save_safetensors(str(out / "kokoro-v1_0.safetensors"), stored)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "voices").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for voice in KOKORO_VOICES:
        pack = mx.array(rng.standard_normal((510, 1, 256)).astype(np.float32) * 0.5)
        mx.save_safetensors(str(out / "voices" / f"{voice}.safetensors"), {"voice": pack})
    return out


