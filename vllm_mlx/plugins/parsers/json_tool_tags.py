"""Kept for plugins written against the first parser API: the Hermes parser under its old name."""

from .hermes import HermesToolParser as JsonToolTagParser

__all__ = ["JsonToolTagParser"]
