"""Every built-in tool-call parser, streamed in any chunking and read whole:
the same calls either way, no markup left in content, bad markup kept as text."""

from __future__ import annotations

import json
import random

import pytest

from vllm_mlx.plugins import PluginManager
from vllm_mlx.plugins.interfaces import (
    DeltaMessage, ReasoningParser, ToolCall, ToolCallDelta, ToolParser, merge_tool_call_pieces,
)
from vllm_mlx.core.output import SequenceOutput
from vllm_mlx.core.params import SamplingParams
from vllm_mlx.core.request import TokenEvent

PM = PluginManager(load_entry_points=False)
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
PARIS = ("get_weather", {"city": "Paris"})
ROME = ("get_weather", {"city": "Rome", "days": 2})

CASES = [
    ("hermes", 'Sure. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}\n</tool_call>',
     "Sure. ", [PARIS, ROME]),
    ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
                    "</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n"
                    "<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>", "", [PARIS, ROME]),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
                    '{"name": "get_weather", "parameters": {"city": "Rome", "days": 2}}', "", [PARIS, ROME]),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                '{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}]', "", [PARIS, ROME]),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", '
                '"days": 2}', "", [PARIS, ROME]),
    ("deepseek_v3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                    '{"city": "Paris"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>'
                    'get_weather\n```json\n{"city": "Rome", "days": 2}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
     "", [PARIS, ROME]),
    ("deepseek_v31", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}'
                     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "", [PARIS]),
    ("gemma3", 'Checking.\n```tool_code\nget_weather(city="Paris")\nget_weather(city="Rome", days=2)\n```',
     "Checking.\n", [PARIS, ROME]),
    ("gemma3", '```tool_code\nprint(default_api.get_weather(city="Paris"))\n```', "", [PARIS]),
    ("gemma3", '```tool_code\n[get_weather(city="Paris"), get_weather(city="Rome", days=2)]\n```', "", [PARIS, ROME]),
]
IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(CASES)]


def stream(parser, pieces):
    outs = [parser.feed(p) for p in pieces] + [parser.finish()]
    return "".join(c for c, _ in outs), [d for _, ds in outs for d in ds]


def chunkings(text):
    rng = random.Random(len(text))
    yield list(text)  # one character at a time
    yield [text]
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(text)), 6))
        yield [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@pytest.mark.parametrize("name,text,content,expected", CASES, ids=IDS)
def test_streamed_in_any_chunking_equals_whole(name, text, content, expected):
    cls = PM.tool_parser(name)
    whole = cls(None, [WEATHER]).extract_tool_calls(text)
    assert whole.tools_called
    assert [(c.name, json.loads(c.arguments)) for c in whole.tool_calls] == expected
    assert (whole.content or "") == content
    for pieces in chunkings(text):
        got, deltas = stream(cls(None, [WEATHER]), pieces)
        assert got == content
        calls = merge_tool_call_pieces(deltas)
        assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in whole.tool_calls]
        firsts = {}
        for d in deltas:  # the first piece of each call names it; later ones only add arguments
            if d.index not in firsts:
                firsts[d.index] = d
                assert d.name and d.id and d.id.startswith("call_")
            else:
                assert d.name is None and d.id is None
        assert sorted(firsts) == list(range(len(expected)))


def test_arguments_stream_in_pieces():
    text = CASES[0][1]
    _, deltas = stream(PM.tool_parser("hermes")(None, [WEATHER]), list(text))
    assert len([d for d in deltas if d.index == 0 and d.arguments]) > 5


@pytest.mark.parametrize("name,text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>'),
    ("hermes", "<tool_call>not json</tool_call>"),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"ci'),
    ("llama3_json", '{"answer": 42}'),
    ("mistral", "[TOOL_CALLS] [{oops}]"),
    ("deepseek_v3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{bad}\n```"),
    ("gemma3", "```tool_code\nimport os\n```"),
    ("qwen3_coder", "<tool_call>\nplain words\n</tool_call>"),
])
def test_malformed_markup_is_plain_content(name, text):
    found = PM.tool_parser(name)(None, [WEATHER]).extract_tool_calls(text)
    assert not found.tools_called and found.tool_calls == []
    assert found.content == text


def test_text_without_markup_passes_through_unchanged():
    text = "A < b and [TOOL and ``` fences and <tool and {braces} too."
    for name in PM.names("tool_parsers"):
        got, deltas = stream(PM.tool_parser(name)(None, []), list(text))
        if name == "llama3_json":
            assert got == text  # it only reads a reply that starts with "{"
        assert got == text and deltas == [], name


@pytest.mark.parametrize("template,expected", [
    ("... <tool_call>\n{...}\n</tool_call> ...", "hermes"),
    ("<tool_call>\n<function=x>\n<parameter=y>\n", "qwen3_coder"),
    ("{{ '<|python_tag|>' }}", "llama3_json"),
    ("[AVAILABLE_TOOLS] [TOOL_CALLS]", "mistral"),
    ("<｜tool▁calls▁begin｜>", "deepseek_v3"),
    ("```tool_code", "gemma3"),
    ("{{ messages }}", None),
])
def test_tool_parser_is_detected_from_the_chat_template(template, expected):
    assert PM.detect_tool_parser(template) == expected


class OldStyleParser(ToolParser):
    """A third-party parser written against the first interface: whole calls from feed."""

    name = "old_style"
    buf = ""

    def feed(self, text):
        self.buf += text
        if "CALL" in self.buf:
            before, self.buf = self.buf.split("CALL")[0], ""
            return before, [ToolCall(name="f", arguments='{"x": 1}')]
        held = self.buf.find("C")
        out, self.buf = (self.buf, "") if held == -1 else (self.buf[:held], self.buf[held:])
        return out, []


class VllmStyleTools(ToolParser):
    """Written the vLLM way: extract_* only, pieces shaped like vLLM's DeltaToolCall (as dicts)."""

    name = "vllm_tools"

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                     current_token_ids, delta_token_ids, request=None):
        if "@" not in current_text:
            return DeltaMessage(content=delta_text)
        if "@" not in previous_text:
            head = delta_text.split("@")[0]
            return DeltaMessage(content=head or None, tool_calls=[
                {"index": 0, "id": "call_v", "type": "function", "function": {"name": "f", "arguments": ""}}])
        return DeltaMessage(tool_calls=[{"index": 0, "function": {"arguments": delta_text}}])


class VllmStyleReasoning(ReasoningParser):
    """A parser written the vLLM way: only the extract_* methods."""

    name = "vllm_style"

    def extract_reasoning(self, model_output, request=None):
        head, _, tail = model_output.partition("|")
        return head, tail

    def extract_reasoning_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                    current_token_ids, delta_token_ids):
        if "|" in previous_text:
            return DeltaMessage(content=delta_text)
        head, bar, tail = delta_text.partition("|")
        return DeltaMessage(reasoning=head or None, content=tail or None)


def run_pipeline(text_ids, tokenizer, reasoning=None, tools=None, stream=True):
    out = SequenceOutput(0, tokenizer, SamplingParams(), set(), None, reasoning, tools, stream=stream)
    events = [TokenEvent("r", t) for t in text_ids] + [TokenEvent("r", None, "stop")]
    deltas = [out.process([ev]) for ev in events]
    return ("".join(d.reasoning for d in deltas), "".join(d.text for d in deltas),
            [c for d in deltas for c in d.tool_calls])


class CharTokenizer:
    """Token id = character code: one character per token."""

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize("stream", [True, False])
def test_old_and_vllm_style_parsers_work_in_the_pipeline(stream):
    tok = CharTokenizer()
    ids = [ord(c) for c in "think|answer CALL"]
    reasoning, content, calls = run_pipeline(ids, tok, VllmStyleReasoning(tok), OldStyleParser(tok), stream)
    assert reasoning == "think"
    assert "answer" in content and "CALL" not in content
    assert [(c.index, c.name, c.arguments) for c in calls] == [(0, "f", '{"x": 1}')]
    assert isinstance(calls[0], ToolCallDelta) and calls[0].id.startswith("call_")


def test_vllm_style_tool_parser_streams_through_the_pipeline():
    tok = CharTokenizer()
    _, content, pieces = run_pipeline([ord(c) for c in 'Hi @{"x": 1}'], tok, None, VllmStyleTools(tok), True)
    assert content == "Hi "
    calls = merge_tool_call_pieces(pieces)
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_v", "f", '{"x": 1}')]


def test_a_parser_must_implement_one_interface():
    class Empty(ToolParser):
        name = "empty"

    with pytest.raises(TypeError):
        Empty(None)


# -- property: parsers never raise and never lose text they did not turn into calls ---------------
from hypothesis import given, settings, strategies as st  # noqa: E402

PIECES = ["<tool_call>", "</tool_call>", "<function=get_weather>", "<parameter=city>", "</parameter>",
          "</function>", "<|python_tag|>", "[TOOL_CALLS]", "[ARGS]", "<｜tool▁calls▁begin｜>",
          "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", "```tool_code",
          "```json", "```", '{"name": "get_weather", "arguments": ', '"parameters": ', '{"city": "Paris"}',
          "get_weather(city='Paris')", "{", "}", "[", "]", '"', ",", ";", "\n", " ", "text", "<", "\\"]
texts = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=6))
def test_any_text_is_kept_unless_it_became_a_call(text, cuts):
    for name in PM.names("tool_parsers"):
        cls = PM.tool_parser(name)
        whole = cls(None, [WEATHER]).extract_tool_calls(text)
        if not whole.tools_called:
            assert (whole.content or "") == text, name
        for call in whole.tool_calls:
            assert isinstance(json.loads(call.arguments), dict), name
        bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
        content, deltas = stream(cls(None, [WEATHER]), [text[a:b] for a, b in zip(bounds, bounds[1:])])
        if not deltas:
            assert content == text, name


def test_an_empty_deepseek_calls_block_stays_text():
    text = "<｜tool▁calls▁begin｜><｜tool▁calls▁end｜>"
    cls = PM.tool_parser("deepseek_v3")
    whole = cls(None, [WEATHER]).extract_tool_calls(text)
    assert not whole.tools_called and whole.content == text
    content, deltas = stream(cls(None, [WEATHER]), [text[:5], text[5:]])
    assert content == text and not deltas
