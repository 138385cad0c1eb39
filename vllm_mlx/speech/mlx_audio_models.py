"""Any mlx-audio text-to-speech or speech-to-text model type, loaded and run generically.

mlx-audio's own ``load_model`` does the work for most families; we keep our own copy of
its few steps for text-to-speech because some families' post-load hooks reach for the
Hugging Face hub (VibeVoice's tokenizer, Chatterbox's S3 speech tokenizer) even when the
model folder holds what they need, and a server must load offline from a folder. Those
fix-ups are in ``_FAMILY_HOOKS``; everything else is mlx-audio's code.

A TTS request becomes ``model.generate(text=..., voice=..., ref_audio=..., **options)``;
every ``GenerationResult`` it yields is one step of the speech engine thread (one chunk
of audio), so long inputs stream and interleave with other requests.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger("vllm_mlx.speech")

MAX_UPLOADED_VOICES = 64
CLIP_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a")
# generate() parameters the server sets itself; a request cannot pass them as options
RESERVED = {"self", "text", "voice", "ref_audio", "ref_text", "speed", "lang_code", "verbose", "stream",
            "streaming_interval", "audio_prompt", "audio_prompt_sr", "conds", "kwargs", "args"}


class SpeechOptionError(ValueError):
    """A request option the model cannot take; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


def resolve_family(config: dict, category: str) -> str | None:
    """The mlx-audio model package (``mlx_audio.<category>.models.<name>``) for a config,
    or None when mlx-audio (or that family) is not installed."""
    try:
        from mlx_audio.registry import model_type_from_config

        utils = importlib.import_module(f"mlx_audio.{category}.utils")
    except ImportError:
        return None
    model_type = model_type_from_config(config) or config.get("architecture")
    if not isinstance(model_type, str) or not model_type.isidentifier():
        return None
    name = getattr(utils, "MODEL_REMAPPING", {}).get(model_type, model_type)
    try:
        found = importlib.util.find_spec(f"mlx_audio.{category}.models.{name}")
    except (ImportError, ValueError):
        return None
    return name if found is not None else None


def _on_gpu() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.gpu and mx.metal.is_available()


def load_tts(path: Path, config: dict, family: str) -> Any:
    """mlx-audio's ``base_load_model`` steps, with the offline fix-ups of ``_FAMILY_HOOKS``."""
    import mlx.core as mx
    from mlx_audio.utils import apply_quantization, load_weights

    arch = importlib.import_module(f"mlx_audio.tts.models.{family}")
    config = {**config, "model_path": str(path)}
    pre, post = _FAMILY_HOOKS.get(family, (None, None))
    if pre is not None:
        config = pre(path, config)
    model_config = arch.ModelConfig.from_dict(config) if hasattr(arch, "ModelConfig") else config
    model = arch.Model(model_config)
    weights = load_weights(path)
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    quantized = bool(config.get("quantization") or config.get("quantization_config"))
    apply_quantization(model, config, weights, getattr(model, "model_quant_predicate", None))
    if not quantized and not _on_gpu():  # bf16/fp16 run several times slower on MLX's CPU backend
        weights = {k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                   for k, v in weights.items()}
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.eval()
    if post is not None:
        model = post(model, path)
    elif hasattr(arch.Model, "post_load_hook"):
        model = arch.Model.post_load_hook(model, path)
    _eval_helpers(model)
    return model


def _eval_helpers(model: Any) -> None:
    """Evaluate every array the model holds outside its parameters (private buffers such as
    RoPE tables, helper objects such as VibeVoice's noise scheduler, conditioning caches):
    left lazy, they would be evaluated on the speech engine thread, whose stream the
    arrays' graphs do not belong to."""
    import mlx.core as mx
    import mlx.nn as nn

    arrays, seen = [], set()
    stack = [(m, 0) for m in model.modules()]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 4:
            continue
        seen.add(id(obj))
        if isinstance(obj, mx.array):
            arrays.append(obj)
            continue
        if isinstance(obj, dict):
            stack += [(v, depth + 1) for v in obj.values()]
        elif isinstance(obj, (list, tuple)):
            stack += [(v, depth + 1) for v in obj]
        if hasattr(obj, "__dict__") and (isinstance(obj, nn.Module) or type(obj).__module__.startswith("mlx_audio")):
            stack += [(v, depth + 1) for v in vars(obj).values()]
    if arrays:
        mx.eval(*arrays)


def load_stt(path: Path) -> Any:
    import mlx.core as mx
    from mlx_audio.stt.utils import load_model

    model = load_model(path)
    if not _on_gpu() and not (load_config_quantized(path)):  # float16/bf16 are slow on MLX's CPU backend
        model.set_dtype(mx.float32)
        mx.eval(model.parameters())
    _eval_helpers(model)
    return model


def load_config_quantized(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("quantization") or config.get("quantization_config"))


# -- offline fix-ups per family ---------------------------------------------------------
def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()


def _vibevoice_post(model: Any, path: Path) -> Any:
    # VibeVoice's hook loads Qwen2.5's tokenizer from the hub; a folder that carries the
    # tokenizer files is read instead (the hook then only resolves special-token ids)
    if model.tokenizer is None and _has_tokenizer(path):
        from transformers import AutoTokenizer

        model.tokenizer = AutoTokenizer.from_pretrained(str(path))
    return type(model).post_load_hook(model, path)


def _chatterbox_pre(path: Path, config: dict) -> dict:
    # Chatterbox names its T3 backbone size (``llama_config_name``) from a fixed table; a
    # folder may carry the backbone's config itself (``t3_llama_config``), e.g. a small one
    from mlx_audio.tts.models.chatterbox.config import LLAMA_CONFIGS

    extra = config.get("t3_llama_config")
    if isinstance(extra, dict):
        name = (config.get("t3_config") or {}).get("llama_config_name", "Llama_520M")
        LLAMA_CONFIGS.setdefault(name, {**LLAMA_CONFIGS["Llama_520M"], **extra})
    return config


def _chatterbox_post(model: Any, path: Path) -> Any:
    """Chatterbox's hook without its unconditional download: text tokenizers from the
    folder, the S3 speech tokenizer (needed to clone a voice) from ``s3_tokenizer/`` in
    the folder, else from the hub cache or the hub, and the default voice from
    ``conds.safetensors``."""
    import mlx.core as mx
    from mlx_audio.tts.models.chatterbox.chatterbox import Conditionals
    from mlx_audio.tts.models.chatterbox.s3tokenizer import ModelConfig as S3Config
    from mlx_audio.tts.models.chatterbox.s3tokenizer import S3TokenizerV2
    from mlx_audio.tts.models.chatterbox.t3.cond_enc import T3Cond

    model._init_text_tokenizers(path)
    s3dir = path / "s3_tokenizer"
    if not (s3dir / "model.safetensors").exists():
        try:
            from huggingface_hub import snapshot_download

            s3dir = Path(snapshot_download("mlx-community/S3TokenizerV2",
                                           allow_patterns=["model.safetensors", "config.json"]))
        except Exception as exc:  # noqa: BLE001 - offline: the model speaks, but cannot clone voices
            log.warning("Chatterbox: no S3 tokenizer (%s); voice cloning is off for %s", exc, path)
            s3dir = None
    model._vllm_mlx_can_clone = s3dir is not None
    if s3dir is not None:
        cfg = {}
        if (s3dir / "config.json").exists():
            raw = json.loads((s3dir / "config.json").read_text())
            cfg = {k: v for k, v in raw.items() if k in S3Config.__dataclass_fields__}
        tokenizer = S3TokenizerV2("speech_tokenizer_v2_25hz", S3Config(**cfg))
        weights = mx.load(str(s3dir / "model.safetensors"))
        if hasattr(tokenizer, "sanitize"):
            weights = tokenizer.sanitize(weights)
        if not _on_gpu():
            weights = {k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                       for k, v in weights.items()}
        tokenizer.load_weights(list(weights.items()), strict=False)
        mx.eval(tokenizer.parameters())
        model._s3_tokenizer = tokenizer
    model._conds = None
    conds_path = path / "conds.safetensors"
    if conds_path.exists():
        data = mx.load(str(conds_path))
        t3 = T3Cond(speaker_emb=data.get("t3.speaker_emb", mx.zeros((1, 256))),
                    cond_prompt_speech_tokens=data.get("t3.cond_prompt_speech_tokens"),
                    emotion_adv=data.get("t3.emotion_adv", mx.ones((1, 1, 1)) * 0.5))
        gen = {k[4:]: v for k, v in data.items() if k.startswith("gen.")}
        if "prompt_feat_len" not in gen and "prompt_feat" in gen:
            gen["prompt_feat_len"] = mx.array([gen["prompt_feat"].shape[1]])
        model._conds = Conditionals(t3, gen)
        mx.eval([a for a in (t3.speaker_emb, t3.cond_prompt_speech_tokens, t3.emotion_adv, *gen.values())
                 if isinstance(a, mx.array)])
    return model


_FAMILY_HOOKS: dict[str, tuple[Callable | None, Callable | None]] = {
    "vibevoice": (None, _vibevoice_post),
    "chatterbox": (_chatterbox_pre, _chatterbox_post),
}


class MlxAudioTTSRunner:
    """What the speech route and engine thread call for a generic mlx-audio TTS model.

    Voices come from the folder's ``voices/``: ``NAME.safetensors`` is passed to the model
    by name (VibeVoice voice caches); ``NAME.wav`` (or mp3/flac/...) is a reference clip
    for models that clone a voice, with ``NAME.txt`` as its transcript when the model
    wants one (VoxCPM). ``default`` is the model's own voice, when it has one.
    """

    generic = True

    def __init__(self, model: Any, path: Path, family: str):
        self.model = model
        self.path = path
        self.family = family
        self.sample_rate = int(getattr(model, "sample_rate", 24000))
        params = inspect.signature(model.generate).parameters
        self.params = params
        self.clones = "ref_audio" in params and getattr(model, "_vllm_mlx_can_clone", True)
        self.options = {name: p.default for name, p in params.items()
                        if name not in RESERVED and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        self.clips: dict[str, tuple[np.ndarray, str | None]] = {}
        self.voices: dict[str, str] = {}
        if self._speaks_without_voice():
            self.voices["default"] = "any"
        vdir = path / "voices"
        for f in sorted(vdir.glob("*.safetensors")) if vdir.is_dir() else []:
            self.voices[f.stem] = "any"
        for f in sorted(vdir.iterdir()) if vdir.is_dir() and self.clones else []:
            if f.suffix.lower() in CLIP_SUFFIXES:
                self.voices[f.stem] = "any"

    def _speaks_without_voice(self) -> bool:
        if self.family == "chatterbox":
            return getattr(self.model, "_conds", None) is not None
        return True

    def add_voice(self, name: str, samples: np.ndarray, text: str | None = None) -> None:
        """A reference clip uploaded to the server (kept in memory), usable as ``voice``."""
        if not self.clones:
            raise SpeechOptionError(f"{self.family} models do not clone voices", param="file",
                                    code="cloning_unsupported")
        if name not in self.clips and len(self.clips) >= MAX_UPLOADED_VOICES:
            raise SpeechOptionError(f"This model already holds {MAX_UPLOADED_VOICES} uploaded voices",
                                    param="name", code="too_many_voices")
        self.clips[name] = (samples, text)
        self.voices[name] = "any"

    def _clip(self, name: str) -> tuple[np.ndarray, str | None]:
        if name in self.clips:
            return self.clips[name]
        from .audio_io import decode_audio

        vdir = self.path / "voices"
        for suffix in CLIP_SUFFIXES:
            f = vdir / f"{name}{suffix}"
            if f.exists():
                text = (vdir / f"{name}.txt").read_text().strip() if (vdir / f"{name}.txt").exists() else None
                self.clips[name] = (decode_audio(f.read_bytes(), self.sample_rate), text)
                return self.clips[name]
        raise KeyError(name)

    def check_options(self, options: dict) -> dict:
        """Model-specific options (``extra_body``): only named ``generate`` parameters, of
        the type of their default."""
        out = {}
        for key, value in options.items():
            if key not in self.options:
                accepted = ", ".join(sorted(self.options)) or "none"
                raise SpeechOptionError(f"Unknown option {key!r} for {self.family} models; accepted: {accepted}",
                                        param=key, code="unknown_option")
            default = self.options[key]
            ok = (value is None or default is inspect.Parameter.empty or default is None
                  or (isinstance(default, bool) and isinstance(value, bool))
                  or (isinstance(default, (int, float)) and not isinstance(default, bool)
                      and isinstance(value, (int, float)) and not isinstance(value, bool)
                      and (isinstance(default, float) or isinstance(value, int)))
                  or (isinstance(default, str) and isinstance(value, str)))
            if not ok:
                raise SpeechOptionError(f"Option {key!r} must be a {type(default).__name__}", param=key,
                                        code="invalid_option")
            out[key] = value
        return out

    def prepare(self, text: str, voice: str | None, speed: float, language: str | None,
                ref_audio: np.ndarray | None, ref_text: str | None, options: dict) -> Callable[[], Iterator]:
        """Checks a request (``SpeechOptionError``), and returns what makes its steps."""
        kwargs = self.check_options(options)
        voice = voice or next(iter(self.voices), None)
        if ref_audio is None and voice is not None and voice != "default":
            if voice not in self.voices:
                raise SpeechOptionError(f"Unknown voice {voice!r}; this model's voices: "
                                        f"{', '.join(self.voices) or 'none'}", param="voice", code="unknown_voice")
            if (self.path / "voices" / f"{voice}.safetensors").exists():
                kwargs["voice"] = voice
            else:
                ref_audio, clip_text = self._clip(voice)
                ref_text = ref_text or clip_text
        elif voice is None and not self.voices:
            raise SpeechOptionError(f"This {self.family} model has no voice of its own: send a reference clip "
                                    "(`ref_audio`, base64) or upload one to /v1/audio/voices", param="voice",
                                    code="voice_required")
        if ref_audio is not None:
            if not self.clones:
                raise SpeechOptionError(f"{self.family} models here do not clone voices from `ref_audio`",
                                        param="ref_audio", code="cloning_unsupported")
            import mlx.core as mx

            kwargs["ref_audio"] = mx.array(ref_audio)
            if "ref_text" in self.params:
                if not ref_text:
                    raise SpeechOptionError(f"{self.family} needs the transcript of the reference clip "
                                            "(`ref_text`)", param="ref_text", code="ref_text_required")
                kwargs["ref_text"] = ref_text
        if "speed" in self.params:
            kwargs["speed"] = speed
        elif speed != 1.0:
            raise SpeechOptionError(f"{self.family} models have no speed control", param="speed")
        if language:
            if "lang_code" not in self.params:
                raise SpeechOptionError(f"{self.family} models take no `language`", param="language")
            kwargs["lang_code"] = language
        if "verbose" in self.params:
            kwargs["verbose"] = False

        def steps() -> Iterator[np.ndarray]:
            for result in self.model.generate(text=text, **kwargs):
                yield np.array(result.audio, dtype=np.float32).reshape(-1)

        return steps


class MlxAudioSTTModel:
    """A generic mlx-audio STT model behind the interface the transcription route uses
    (Whisper's ``generate``): text, language and segments per 30 s window."""

    def __init__(self, model: Any, family: str):
        import mlx.core as mx

        self.model = model
        self.family = family
        self.dtype = mx.float32
        self.params = inspect.signature(model.generate).parameters
        self.is_multilingual = "task" in self.params  # what the translations route asks

    def generate(self, audio: Any, *, language: str | None = None, task: str = "transcribe",
                 temperature: float = 0.0, initial_prompt: str | None = None, word_timestamps: bool = False,
                 **_: Any) -> Any:
        kwargs: dict[str, Any] = {}
        if language and "language" in self.params:
            kwargs["language"] = language
        if "temperature" in self.params:
            kwargs["temperature"] = temperature
        if task != "transcribe" and "task" in self.params:
            kwargs["task"] = task
        if "verbose" in self.params:
            kwargs["verbose"] = False
        out = self.model.generate(audio, **kwargs)
        segments = [s for s in (getattr(out, "segments", None) or []) if isinstance(s, dict) and "start" in s]
        return _STTResult(text=str(getattr(out, "text", "") or ""), language=getattr(out, "language", None)
                          or language, segments=[{**s, "text": s.get("text", "")} for s in segments])


class _STTResult:
    def __init__(self, text: str, language: str | None, segments: list):
        self.text, self.language, self.segments = text, language, segments
