"""A tiny model trained (like the demo model) to answer a few scripts in the
exact formats the parsers read: parallel Hermes calls, a Qwen3-Coder XML call,
a malformed call, Qwen3 and DeepSeek-R1 style reasoning (the XML call comes
after R1-style reasoning, as DeepSeek-R1 and Qwen3 write them). Built once per test
session into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}


def _call(city: str) -> str:
    return '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call>' % city


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


SCRIPTS = [
    {"name": "parallel", "messages": _user("Weather in Paris and Rome?"), "tools": [WEATHER],
     "reply": _call("Paris") + "\n" + _call("Rome")},
    {"name": "text_then_call", "messages": _user("Check the sky over Oslo."), "tools": [WEATHER],
     "reply": "Let me check.\n" + _call("Oslo")},
    {"name": "xml", "messages": _user("Forecast for Lima, three days."), "tools": [WEATHER],
     "reply": "Lima, three days.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n</parameter>\n"
              "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"},
    {"name": "malformed", "messages": _user("Weather in Bern?"), "tools": [WEATHER],
     "reply": '<tool_call>\n{"name": "get_weather", "arguments": {"city": Bern}}\n</tool_call>'},
    {"name": "think", "messages": _user("What is 2 + 3?"),
     "reply": "<think>\nTwo plus three is five.\n</think>\n\n2 + 3 = 5."},
    {"name": "think_r1", "messages": _user("What is 4 + 4?"),
     "reply": "Four plus four is eight.\n</think>\n\n4 + 4 = 8."},
    {"name": "plain", "messages": _user("Hello!"), "reply": "Hello there, nice to meet you."},
]
BY_NAME = {s["name"]: s for s in SCRIPTS}


def build_scripted_model(out: Path) -> Path:
    from mlx_lm.utils import load_tokenizer

    from vllm_mlx.demo.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer, write_tokenizer
    from vllm_mlx.demo.train import encode_scripts, model_config, train_model, verify_model_dir, write_model

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(vocab_size=512, scripts=SCRIPTS)
    write_tokenizer(tok, out)
    config = model_config(tok.get_vocab_size(), tok.token_to_id(EOS_TOKEN), tok.token_to_id(PAD_TOKEN))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    examples = encode_scripts(load_tokenizer(out), SCRIPTS)
    model, _ = train_model(config, examples, log=lambda *_: None)
    write_model(model, config, out)
    verify_model_dir(out, SCRIPTS)
    return out
