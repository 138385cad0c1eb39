"""Rewrite the command tables of docs/reference/cli.md from the click commands (the text
above the first `### ` heading is kept). Run after adding or changing a CLI option:

    python scripts/cli_reference.py

tests/test_docs.py checks the page against the commands both ways."""

from __future__ import annotations

import re
from pathlib import Path

import click

from vllm_mlx.cli.main import cli

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "cli.md"
ORDER = ["serve", "launch", "plugins", "mcp tools", "mcp call", "bench serve", "bench engine", "bench raw", "bench prefix",
         "bench soak", "bench cpu", "bench speech", "bench vision"]


def walk(cmd: click.Command, path: list[str]):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, path + [name])
    else:
        yield " ".join(path), cmd


def section(name: str, cmd: click.Command) -> str:
    lines = [f"### `vllm-mlx {name}`", "", (cmd.help or "").split("\n\n")[0].replace("\n", " ")]
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if args:
        shown = " ".join(f"`{a.name.upper()}{'...' if a.nargs == -1 else ''}`" if a.required
                         else f"`[{a.name.upper()}]{'...' if a.nargs == -1 else ''}`" for a in args)
        if name == "serve":
            shown = "`[MODEL]...` (folders or Hugging Face repo ids; none: the built-in demo model)"
        lines += ["", f"Arguments: {shown}"]
    lines += ["", "| Option | Default | |", "|---|---|---|"]
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name == "help":
            continue
        names = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
        default = p.default
        if p.is_flag or default in (None, (), False) or type(default).__name__ == "Sentinel":
            default = "(required)" if p.required else ""
        text = (p.help or "").replace("\n", " ").replace("|", "\\|").replace("%%", "%")
        lines.append(f"| {names} | {default} | {text} |")
    return "\n".join(lines)


def main() -> None:
    commands = dict(walk(cli, []))
    order = [n for n in ORDER if n in commands] + sorted(set(commands) - set(ORDER))
    text = PAGE.read_text()
    head = text[:text.index("\n### ") + 1]
    PAGE.write_text(head + "\n\n".join(section(n, commands[n]) for n in order) + "\n")


if __name__ == "__main__":
    main()
