"""Model of the demo: a tiny Qwen3-architecture network trained with MLX to
reproduce the scripted replies exactly, saved as config.json +
model.safetensors, and checked by loading it back through mlx_lm."""

import json
import random
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from .scripts import SCRIPTS, TRAINING_VARIANTS

TRAINING_SCRIPTS = SCRIPTS + TRAINING_VARIANTS

SEED = 1234
MAX_STEPS = 1200
LEARNING_RATE = 3e-3
WARMUP_STEPS = 20
# Training stops once every target token wins by at least this many logits,
# which leaves room for the small numeric differences of cached decoding.
TARGET_MARGIN = 6.0
# A new padded batch starts when a sequence is this much shorter than the
# longest of the current one.
BUCKET_RATIO = 0.8


def model_config(vocab_size, eos_token_id, pad_token_id):
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 128,
        "num_hidden_layers": 3,
        "intermediate_size": 320,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "vocab_size": vocab_size,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "torch_dtype": "float32",
        "bos_token_id": None,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }


def script_prompt(tokenizer, script):
    """Token ids of a script's prompt, as a server would build them."""
    return list(
        tokenizer.apply_chat_template(
            script["messages"],
            tools=script.get("tools"),
            add_generation_prompt=True,
            tokenize=True,
            **script.get("chat_template_kwargs", {}),
        )
    )


def encode_scripts(tokenizer, scripts=None):
    """(prompt ids, target ids) per script (the demo's by default); target =
    reply + <|im_end|>."""
    examples = []
    for script in TRAINING_SCRIPTS if scripts is None else scripts:
        prompt = script_prompt(tokenizer, script)
        text = tokenizer.apply_chat_template(
            script["messages"],
            tools=script.get("tools"),
            add_generation_prompt=True,
            tokenize=False,
            **script.get("chat_template_kwargs", {}),
        )
        if tokenizer.encode(text, add_special_tokens=False) != prompt:
            raise RuntimeError(f"prompt of {script['name']!r} encodes two ways")
        target = tokenizer.encode(script["reply"], add_special_tokens=False)
        target.append(tokenizer.convert_tokens_to_ids(tokenizer.eos_token))
        examples.append((prompt, target))
    return examples


def _buckets(examples, pad_id):
    """Group sequences of similar length into padded (inputs, labels, reply
    mask) batches, so the long tool prompts don't pad the short ones. The
    loss covers the reply tokens only."""
    order = sorted(range(len(examples)), key=lambda i: -len(sum(examples[i], [])))
    groups, current = [], []
    for i in order:
        n = len(examples[i][0]) + len(examples[i][1])
        if current and n < BUCKET_RATIO * current[0][1]:
            groups.append(current)
            current = []
        current.append((i, n))
    groups.append(current)

    batches = []
    for group in groups:
        width = group[0][1] - 1
        xs, ys, ts = [], [], []
        for i, n in group:
            prompt, target = examples[i]
            seq = prompt + target
            pad = width - (n - 1)
            xs.append(seq[:-1] + [pad_id] * pad)
            ys.append(seq[1:] + [pad_id] * pad)
            ts.append([False] * (len(prompt) - 1) + [True] * len(target) + [False] * pad)
        batches.append((mx.array(xs), mx.array(ys), mx.array(ts)))
    return batches


def _loss(model, batches):
    """Mean cross-entropy over reply tokens, and the smallest logit margin
    by which a reply token beats every other token."""
    total, count = mx.array(0.0), mx.array(0)
    margin = mx.array(float("inf"))
    for x, y, on_target in batches:
        logits = model(x)
        ce = nn.losses.cross_entropy(logits, y, reduction="none")
        total = total + mx.where(on_target, ce, 0.0).sum()
        count = count + on_target.sum()
        gold = mx.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
        is_gold = mx.arange(logits.shape[-1]) == y[..., None]
        rival = mx.where(is_gold, -mx.inf, logits).max(axis=-1)
        margin = mx.minimum(margin, mx.where(on_target, gold - rival, mx.inf).min())
    return total / count, margin


def train_model(config, examples, log=print):
    """Train until every target token is the clear greedy choice."""
    from mlx_lm.utils import _get_classes

    mx.random.seed(SEED)
    random.seed(SEED)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    mx.eval(model.parameters())

    batches = _buckets(examples, config["pad_token_id"])
    schedule = optim.join_schedules(
        [optim.linear_schedule(1e-5, LEARNING_RATE, WARMUP_STEPS),
         optim.cosine_decay(LEARNING_RATE, MAX_STEPS, LEARNING_RATE * 0.1)],
        [WARMUP_STEPS],
    )
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.0)
    state = [model.state, optimizer.state]
    loss_and_grad = nn.value_and_grad(model, _loss)

    def step(batches):
        (loss, margin), grads = loss_and_grad(model, batches)
        optimizer.update(model, grads)
        return loss, margin

    step = mx.compile(step, inputs=state, outputs=state)

    for n in range(1, MAX_STEPS + 1):
        loss, margin = step(batches)
        mx.eval(state, loss, margin)
        loss, margin = loss.item(), margin.item()
        if n % 25 == 0:
            log(f"step {n}: loss {loss:.4f}, min target margin {margin:.2f}")
        if margin >= TARGET_MARGIN:
            break
    else:
        raise RuntimeError(f"demo model did not converge (margin {margin:.2f})")
    log(f"trained {n} steps: loss {loss:.4f}, min target margin {margin:.2f}")
    return model, {"steps": n, "loss": loss, "margin": margin}


def write_model(model, config, out_dir):
    out_dir = Path(out_dir)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(
        str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"}
    )


def verify_model_dir(path, scripts=None):
    """Load the folder with mlx_lm and greedy-decode every script (and
    training variant, or the given scripts); raise if any reply differs by a
    single token."""
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(path))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    failures = []
    for script in TRAINING_SCRIPTS if scripts is None else scripts:
        prompt = script_prompt(tokenizer, script)
        target = tokenizer.encode(script["reply"], add_special_tokens=False)
        text, tokens, finish = "", [], None
        for r in stream_generate(
            model, tokenizer, prompt, max_tokens=len(target) + 8
        ):
            text += r.text
            tokens.append(r.token)
            finish = r.finish_reason
        if text != script["reply"] or tokens != target + [eos] or finish != "stop":
            failures.append(f"{script['name']}: got {text!r} ({finish})")
    if failures:
        raise RuntimeError("demo model does not reproduce: " + "; ".join(failures))
    return len(TRAINING_SCRIPTS)

