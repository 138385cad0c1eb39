"""The docs' own check: relative links (and their #anchors) resolve, the CLI reference
matches the click commands both ways (every command and option documented, nothing
documented that does not exist), every `vllm-mlx ...` command line shown in the docs
parses with the real CLI, and the examples the docs name exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from vllm_mlx.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def reference_sections() -> dict[tuple[str, ...], set[str]]:
    text = (ROOT / "docs/reference/cli.md").read_text()
    sections = {}
    for m in re.finditer(r"^### `vllm-mlx ([^`]+)`\n(.*?)(?=^### |\Z)", text, re.M | re.S):
        opts = set(re.findall(r"`(--?[\w-]+)`", "\n".join(line.split("|")[1] for line in m.group(2).splitlines()
                                                           if line.startswith("| `-"))))
        sections[tuple(m.group(1).split())] = opts
    return sections


def test_cli_reference_matches_the_commands():
    documented = reference_sections()
    real = dict(commands(cli))
    assert set(documented) == set(real), (f"undocumented: {set(real) - set(documented)}; "
                                          f"documented but absent: {set(documented) - set(real)}")
    for path, cmd in real.items():
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
        opts -= {"--help", "-h"}
        assert documented[path] == opts, (f"vllm-mlx {' '.join(path)}: run `python scripts/cli_reference.py` "
                                          f"(docs/reference/cli.md): add {sorted(opts - documented[path])}, remove "
                                          f"{sorted(documented[path] - opts)}")


def shown_command_lines() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            block = block.replace("\\\n", " ")
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                for start in ("vllm-mlx ", "python -m vllm_mlx.server"):
                    if start in line and line.index(start) in (0, line.find("&& ") + 3 if "&& " in line else 0):
                        found.append((page, line[line.index(start):].split(" && ")[0]))
    return found


def parse(line: str) -> None:
    """A command line parses and type-checks; a usage synopsis (``[--opt N]``) names only
    options that exist."""
    synopsis = "[--" in line
    argv = shlex.split(line.replace("[", " ").replace("]", " ") if synopsis else line)
    if argv[:3] == ["python", "-m", "vllm_mlx.server"]:
        argv = ["vllm-mlx", "serve", *argv[3:]]
    assert argv[0] == "vllm-mlx"
    cmd, args = cli, argv[1:]
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        assert args[0] in cmd.commands, f"no command {args[0]!r} in: {line}"
        cmd = cmd.commands[args.pop(0)]
    if synopsis:
        names = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        unknown = [a for a in args if a.startswith("--") and a not in names]
        assert not unknown, f"unknown options {unknown} in: {line}"
        return
    cmd.make_context(argv[0], args, resilient_parsing=False)  # parses and type-checks every option


def test_cli_reference_shows_examples_of_each_command():
    lines = [line for page, line in shown_command_lines() if page.name == "cli.md"]
    assert {tuple(line.split()[1:3]) if line.split()[1] in ("bench", "mcp") else (line.split()[1],)
            for line in lines} >= {("serve",), ("plugins",), ("mcp", "tools"), ("bench", "serve"), ("bench", "engine")}


@pytest.mark.parametrize("page,line", shown_command_lines(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_command_lines_in_the_docs_parse(page, line):
    try:
        parse(line)
    except click.exceptions.Exit:
        pass


def test_examples_named_in_docs_exist():
    named = set()
    for page in PAGES:
        named |= set(re.findall(r"examples/([\w]+\.py)", page.read_text()))
    assert named and all((ROOT / "examples" / n).exists() for n in named), named
