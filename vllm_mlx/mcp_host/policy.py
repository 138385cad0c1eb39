"""Checks every call passes before it reaches a server: the arguments parse and match
the tool's input schema (jsonschema, which the mcp SDK depends on anyway)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators


class ToolArgumentsError(ValueError):
    """The arguments are not JSON, not an object, or do not match the tool's input schema."""


def parse_arguments(arguments: str | dict | None) -> dict[str, Any]:
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            raise ToolArgumentsError(f"arguments are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentsError(f"arguments must be a JSON object, got {type(arguments).__name__}")
    return arguments


@lru_cache(maxsize=512)
def _validator(schema_json: str):
    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError as exc:
        return exc  # the server's schema itself is broken: no call can be checked against it
    return cls(schema)


def check_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = _validator(json.dumps(schema, sort_keys=True))
    if isinstance(validator, Exception):
        raise ToolArgumentsError(f"the tool's input schema is invalid ({validator.message}); refusing to call it")
    error = schema_errors.best_match(validator.iter_errors(arguments))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ToolArgumentsError(f"arguments do not match the tool's input schema"
                                 f"{f' at {where!r}' if where else ''}: {error.message}")
