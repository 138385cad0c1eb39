"""Tokenizer of the demo model: a small byte-level BPE trained on the
scripted conversations, written as tokenizer.json + tokenizer_config.json."""

import json
import re
from pathlib import Path

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .scripts import CHAT_TEMPLATE, GENERIC_TEXT, SCRIPTS

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Control tokens, in id order (ids 0..8). The first three frame chat turns
# and are special (hidden by skip_special_tokens); the markup tokens stay
# visible in decoded text, as in Qwen3, so reasoning and tool-call parsers
# can see them.
CONTROL_TOKENS = [
    (PAD_TOKEN, True),
    ("<|im_start|>", True),
    (EOS_TOKEN, True),
    ("<think>", False),
    ("</think>", False),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
]

VOCAB_SIZE = 768
MODEL_MAX_LENGTH = 4096

_CONTROL_RE = re.compile("|".join(re.escape(t) for t, _ in CONTROL_TOKENS))


def _plain_pieces(texts):
    """Split texts around control tokens; BPE only learns the text between."""
    for text in texts:
        for piece in _CONTROL_RE.split(text):
            if piece:
                yield piece


def render_chat(messages, tools=None, add_generation_prompt=True, **kwargs):
    """Render the chat template the way transformers does (same Jinja
    settings); used only to build the tokenizer's training text."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages,
        tools=tools,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )


def script_texts(scripts=None):
    """Every scripted conversation rendered in full, reply included."""
    for script in SCRIPTS if scripts is None else scripts:
        prompt = render_chat(
            script["messages"],
            tools=script.get("tools"),
            **script.get("chat_template_kwargs", {}),
        )
        yield prompt + script["reply"] + EOS_TOKEN


def train_tokenizer(vocab_size=VOCAB_SIZE, scripts=None):
    """Train a byte-level BPE on the scripts (the demo's by default) plus some
    generic English."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=[t for t, _ in CONTROL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = list(_plain_pieces(list(script_texts(scripts)) + list(GENERIC_TEXT)))
    tok.train_from_iterator(corpus, trainer=trainer)

    # Re-load from JSON with the markup tokens flagged non-special.
    data = json.loads(tok.to_str())
    flags = dict(CONTROL_TOKENS)
    for entry in data["added_tokens"]:
        entry["special"] = flags[entry["content"]]
    return Tokenizer.from_str(json.dumps(data))


def tokenizer_config(tok):
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "additional_special_tokens": [t for t, s in CONTROL_TOKENS if s][1:],
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "chat_template": CHAT_TEMPLATE,
    }


def write_tokenizer(tok, out_dir):
    out_dir = Path(out_dir)
    (out_dir / "tokenizer.json").write_text(
        tok.to_str(pretty=True) + "\n", encoding="utf-8"
    )
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
