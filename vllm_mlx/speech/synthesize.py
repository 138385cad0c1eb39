"""Kokoro speech synthesis sentence by sentence: voices from the model folder's
``voices/``, the language from the voice's prefix, G2P through misaki (mlx-audio's
Kokoro pipeline) when it is installed, or phonemes given directly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# Kokoro's voice prefixes: the first letter names the language
LANGUAGES = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr", "h": "hi", "i": "it", "j": "ja", "p": "pt-br",
             "z": "zh"}
ESPEAK_EXTRA = 'pip install "vllm-mlx[audio-espeak]" (phonemizer-fork + espeakng-loader, which bundles espeak-ng; GPL-3.0)'
ENGLISH = ('pip install "misaki[en]" and spaCy\'s English model, once, where the internet is reachable: '
           "python -m spacy download en_core_web_sm")
G2P_INSTALL = {
    "a": ENGLISH, "b": ENGLISH,
    "e": ESPEAK_EXTRA, "f": ESPEAK_EXTRA, "h": ESPEAK_EXTRA, "i": ESPEAK_EXTRA, "p": ESPEAK_EXTRA,
    "j": 'pip install "misaki[ja]" pyopenjtalk unidic-lite (pyopenjtalk builds from source where it has no wheel, '
         "and fetches its dictionary on first use)",
    "z": 'pip install "vllm-mlx[audio]" (misaki[zh])',
}
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;:])\s+|\n+")


class G2PUnavailable(RuntimeError):
    """No grapheme-to-phoneme conversion for this language here; the message says what to install."""


def list_voices(path: Path) -> dict[str, str]:
    """voice name -> language code, from ``voices/*.safetensors``."""
    voices = sorted(p.stem for p in (path / "voices").glob("*.safetensors"))
    return {v: LANGUAGES.get(v[:1], "unknown") for v in voices}


def _check_offline_data(lang: str) -> None:
    """Fail at once where a G2P would download data on first use: misaki's English G2P runs
    ``spacy.cli.download`` (a pip install) when en_core_web_sm is missing, and pyopenjtalk
    fetches its dictionary; offline either would hang the request until a network timeout."""
    import importlib.util

    if lang in ("a", "b") and importlib.util.find_spec("spacy") is not None \
            and importlib.util.find_spec("en_core_web_sm") is None:
        raise RuntimeError("spaCy's en_core_web_sm is not installed (misaki would try to download it)")
    if lang == "j" and importlib.util.find_spec("pyopenjtalk") is not None:
        import pyopenjtalk

        folder = getattr(pyopenjtalk, "OPEN_JTALK_DICT_DIR", b"")
        folder = folder.decode() if isinstance(folder, bytes) else str(folder)
        if not folder or not Path(folder).exists():
            raise RuntimeError("pyopenjtalk's dictionary is not downloaded yet (it would fetch it now)")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class KokoroRunner:
    """What the speech engine thread calls: holds the model, voice packs and G2P per language."""

    def __init__(self, model: Any, path: Path):
        self.model = model
        self.path = path
        self.voices = list_voices(path)
        self.sample_rate = int(getattr(model, "sample_rate", 24000))
        self._packs: dict[str, Any] = {}
        self._g2p: dict[str, Any] = {}

    def g2p(self, lang: str):
        """The G2P for a Kokoro language letter; ``G2PUnavailable`` when its packages are missing."""
        if lang not in self._g2p:
            try:
                _check_offline_data(lang)
                from mlx_audio.tts.models.kokoro.pipeline import KokoroPipeline

                self._g2p[lang] = KokoroPipeline(lang_code=lang, model=False, repo_id="local",
                                                 model_path=self.path).g2p
            except Exception as exc:  # noqa: BLE001 - ImportError, or a download that cannot happen offline
                raise G2PUnavailable(
                    f"No text-to-phoneme conversion for language {LANGUAGES.get(lang, lang)!r} on this server "
                    f"({type(exc).__name__}: {exc}). Install it: {G2P_INSTALL.get(lang, 'pip install misaki')}; "
                    "or send phonemes with input_type=phonemes") from None
        return self._g2p[lang]

    def phonemes(self, sentence: str, lang: str) -> str:
        out = self.g2p(lang)(sentence)
        return out[0] if isinstance(out, tuple) else str(out)

    def steps(self, text: str, voice: str, speed: float, lang: str, phonemes: bool) -> Iterator[np.ndarray]:
        """One float32 chunk per sentence (runs on the speech engine thread)."""
        import mlx.core as mx

        if voice not in self._packs:
            self._packs[voice] = mx.load(str(self.path / "voices" / f"{voice}.safetensors"))["voice"]
        pack = self._packs[voice]
        limit = self.model.context_length - 2
        for sentence in split_sentences(text):
            ps = sentence if phonemes else self.phonemes(sentence, lang)
            for start in range(0, len(ps), limit):  # Kokoro reads at most context_length - 2 phonemes
                piece = ps[start:start + limit]
                if not piece.strip():
                    continue
                audio = self.model(piece, pack[len(piece) - 1], speed)
                yield np.array(audio, dtype=np.float32).reshape(-1)
