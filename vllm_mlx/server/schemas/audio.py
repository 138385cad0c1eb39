"""OpenAI's audio API: transcription/translation forms and replies, speech requests."""

from __future__ import annotations

from typing import Literal

import msgspec

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class TranscriptionForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The multipart fields of /v1/audio/transcriptions and /translations (the file aside)."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat = "json"
    temperature: float = msgspec.field(default=0.0)
    timestamp_granularities: list[Literal["word", "segment"]] = []
    stream: bool = False
    include: list[str] = []
    chunking_strategy: str | None = None


class TranscriptionWord(msgspec.Struct, kw_only=True):
    word: str
    start: float
    end: float


class TranscriptionSegment(msgspec.Struct, kw_only=True):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionUsage(msgspec.Struct, kw_only=True):
    type: str = "duration"
    seconds: float = 0.0


class Transcription(msgspec.Struct, kw_only=True):
    text: str
    usage: TranscriptionUsage | None = None


class TranscriptionVerbose(msgspec.Struct, kw_only=True):
    task: str
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] = []
    words: list[TranscriptionWord] | None = None
    usage: TranscriptionUsage | None = None


class TranscriptDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="transcript.text.delta"):
    delta: str


class TranscriptDone(msgspec.Struct, kw_only=True, tag_field="type", tag="transcript.text.done"):
    text: str
    usage: TranscriptionUsage | None = None


class SpeechRequest(msgspec.Struct, kw_only=True):
    """POST /v1/audio/speech."""

    input: str
    model: str | None = None
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = 1.0
    instructions: str | None = None  # accepted; Kokoro has no instructions
    stream_format: Literal["audio", "sse"] | None = None
    language: str | None = None  # vllm-mlx: a Kokoro language letter (a, b, e, f, h, i, j, p, z)
    input_type: Literal["text", "phonemes"] = "text"  # vllm-mlx: phonemes skip G2P
    # vllm-mlx, for models that clone a voice (Chatterbox, VoxCPM): a reference clip, base64 or a data: URL,
    # and its transcript (VoxCPM needs it). Other fields a model's generate() takes pass through as options.
    ref_audio: str | None = None
    ref_text: str | None = None


class SpeechAudioDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="speech.audio.delta"):
    audio: str  # base64


class SpeechUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDone(msgspec.Struct, kw_only=True, tag_field="type", tag="speech.audio.done"):
    usage: SpeechUsage


class Voice(msgspec.Struct, kw_only=True):
    id: str
    name: str
    language: str


class VoiceList(msgspec.Struct, kw_only=True):
    object: str = "list"
    model: str
    data: list[Voice] = []
