"""Pure-Python pieces: stop strings, detokenizer, parsers, parameter checks."""

from __future__ import annotations

import json

import pytest

from vllm_mlx.core import ParamError, SamplingParams
from vllm_mlx.core.detokenizer import IncrementalDetokenizer
from vllm_mlx.core.stop_strings import StopStringMatcher
from vllm_mlx.plugins.interfaces import merge_tool_call_pieces
from vllm_mlx.plugins.parsers.json_tool_tags import JsonToolTagParser
from vllm_mlx.plugins.parsers.think_tags import ThinkTagReasoningParser


def feed_all(matcher: StopStringMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        text, matched = matcher.feed(piece)
        out.append(text)
        if matched:
            return "".join(out), matched
    return "".join(out) + matcher.flush(), None


@pytest.mark.parametrize("pieces", [["Hello ST", "OP world"], ["Hello S", "T", "O", "P"], ["Hello STOP"]])
def test_stop_string_split_across_pieces(pieces):
    assert feed_all(StopStringMatcher(["STOP"]), pieces) == ("Hello ", "STOP")


def test_stop_string_partial_prefix_released_when_not_a_match():
    assert feed_all(StopStringMatcher(["STOP"]), ["a ST", "ART b"]) == ("a START b", None)


def test_stop_string_earliest_match_wins_and_can_be_included():
    assert feed_all(StopStringMatcher(["cd", "b"], include_stop=True), ["abcd"]) == ("ab", "b")


def test_detokenizer_never_emits_broken_utf8(random_model_dir):
    from mlx_lm import load

    _, tok = load(str(random_model_dir))
    text = "Grüße aus München 🙂🚀 日本語 °C"
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, tok.encode("Say:", add_special_tokens=False))
    pieces = [detok.add(t) for t in ids] + [detok.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tok.decode(ids)
    # multi-byte characters span tokens here, so some steps must hold text back
    assert any(p == "" for p in pieces[:-1])


def test_detokenizer_keeps_leading_space(random_model_dir):
    from mlx_lm import load

    _, tok = load(str(random_model_dir))
    ids = tok.encode(" quick brown", add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, tok.encode("The", add_special_tokens=False))
    assert "".join(detok.add(t) for t in ids) + detok.flush() == " quick brown"


def chars(parser, text):
    outs = [parser.feed(ch) for ch in text]
    outs.append(parser.finish())
    return outs


def test_think_parser_streamed_char_by_char():
    outs = chars(ThinkTagReasoningParser(None), "<think>\nweigh it\n</think>\n\nThe answer.")
    assert "".join(r for r, _ in outs) == "weigh it"
    assert "".join(c for _, c in outs) == "The answer."


def test_think_parser_without_tags_is_all_content():
    outs = chars(ThinkTagReasoningParser(None), "Just < an answer")
    assert "".join(c for _, c in outs) == "Just < an answer"
    assert "".join(r for r, _ in outs) == ""


def test_tool_parser_streamed_char_by_char():
    text = 'Sure. <tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    outs = chars(JsonToolTagParser(None), text)
    calls = merge_tool_call_pieces([c for _, cs in outs for c in cs])
    assert "".join(t for t, _ in outs) == "Sure. "
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {"x": 1})]


def test_tool_parser_bad_json_stays_text():
    text = "<tool_call>not json</tool_call>"
    outs = chars(JsonToolTagParser(None), text)
    assert "".join(t for t, _ in outs) == text
    assert not [c for _, cs in outs for c in cs]


@pytest.mark.parametrize("field,value", [("max_tokens", 0), ("temperature", -1.0), ("top_p", 0.0), ("n", 0),
                                         ("min_tokens", 999), ("logprobs", 21), ("presence_penalty", 3.0)])
def test_sampling_params_reject_out_of_range(field, value):
    with pytest.raises(ParamError) as err:
        SamplingParams(**{field: value}).validate()
    assert err.value.param == field


def test_think_parser_does_not_hold_long_leading_whitespace():
    parser = ThinkTagReasoningParser(None)
    assert parser.feed("\n" * 10) == ("", "")  # a start tag may still follow
    reasoning, content = parser.feed("\n" * 10)
    assert reasoning == "" and content == "\n" * 20  # past the bound it streams as content
