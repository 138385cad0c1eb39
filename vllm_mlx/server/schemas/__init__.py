"""OpenAI wire schemas, every one a ``msgspec.Struct``."""
