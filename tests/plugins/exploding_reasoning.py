"""A Qwen3 reasoning parser that fails mid-stream for requests whose system prompt says
EXPLODE (the others parse normally): lets tests see how each API reports a failure
after the reply has started."""

from vllm_mlx.plugins import hookimpl
from vllm_mlx.plugins.builtin.qwen3 import Qwen3ReasoningParser


class ExplodingReasoningParser(Qwen3ReasoningParser):
    name = "qwen3_exploding"

    def feed(self, text):
        messages = getattr(self.request, "messages", None) or []
        if any(m["role"] == "system" and "EXPLODE" in str(m["content"]) for m in messages):
            self.fed = getattr(self, "fed", 0) + 1
            if self.fed > 3:
                raise RuntimeError("injected parser failure")
        return super().feed(text)


@hookimpl
def register_reasoning_parsers():
    return [ExplodingReasoningParser]
