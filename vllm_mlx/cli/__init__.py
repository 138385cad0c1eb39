"""Command line: click commands only; the logic lives in the Python API."""
