"""Gemma 3 tool calls: Python-style calls in a ``tool_code`` code block::

    ```tool_code
    get_weather(city="Paris")
    ```

Several calls may be written one per line or as a list, bare or wrapped in
``print(...)``, with or without an object prefix (``default_api.get_weather``).
Arguments must be literals; they are read with ``ast`` (never executed) and become JSON. The
name streams as soon as it is written; the arguments come whole, when the
block closes.
"""

from __future__ import annotations

import ast
import json
import re
import warnings

from .markup_tools import MarkupToolParser, PartialCall, RegionParse

OPEN = "```tool_code"
CLOSE = "```"
# a call's name as soon as it is written: skips a print( wrapper and an object prefix (default_api.)
_NAME = re.compile(r"\s*\[?\s*(?:print\s*\(\s*)?(?!print\s*\()(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\s*\(")


def _calls(code: str) -> list[tuple[str, str]] | None:
    try:
        with warnings.catch_warnings():  # model text may hold odd escapes; they are not our warnings
            warnings.simplefilter("ignore")
            tree = ast.parse(code.strip())
    except (SyntaxError, ValueError):
        return None
    found = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            return None
        items = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
        for item in items:
            if isinstance(item, ast.Call) and isinstance(item.func, ast.Name) and item.func.id == "print" \
                    and len(item.args) == 1 and not item.keywords:
                item = item.args[0]  # print(get_weather(...)), as some Gemma prompts ask for
            if not isinstance(item, ast.Call) or item.args or not isinstance(item.func, (ast.Name, ast.Attribute)):
                return None
            try:
                args = {kw.arg: ast.literal_eval(kw.value) for kw in item.keywords if kw.arg}
            except ValueError:
                return None
            name = item.func.id if isinstance(item.func, ast.Name) else item.func.attr
            found.append((name, json.dumps(args, ensure_ascii=False)))
    return found


class GemmaToolCodeParser(MarkupToolParser):
    name = "gemma3"
    starts = (OPEN,)
    template_markers = ("tool_code",)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        close = region.find(CLOSE, len(OPEN))
        if close == -1 and not final:
            head = _NAME.match(region, len(OPEN))
            return RegionParse([PartialCall(head.group(1))] if head else [])
        code = region[len(OPEN):close if close != -1 else len(region)]
        calls = _calls(code)
        if not calls:
            return RegionParse([], close + len(CLOSE) if close != -1 else None, True)
        end = close + len(CLOSE) if close != -1 else len(region)
        return RegionParse([PartialCall(name, args, True) for name, args in calls], end)
