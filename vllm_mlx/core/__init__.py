"""The batching engine: requests, scheduler, sampling, detokenizing. Knows nothing of HTTP."""

from .async_engine import AsyncEngine, SequenceResult
from .engine import Engine, EngineConfig
from .output import SequenceDelta
from .params import ParamError, SamplingParams
from .scheduler import TIMEOUT_PREFIX

__all__ = ["TIMEOUT_PREFIX", "AsyncEngine", "Engine", "EngineConfig", "ParamError", "SamplingParams", "SequenceDelta",
           "SequenceResult"]
