"""A third-party plugin as a single file: a reasoning parser that upper-cases the answer."""

from vllm_mlx.plugins import hookimpl
from vllm_mlx.plugins.interfaces import ReasoningParser


class ShoutyParser(ReasoningParser):
    name = "shouty"

    def feed(self, text):
        return "", text.upper()


@hookimpl
def register_reasoning_parsers():
    return [ShoutyParser]
