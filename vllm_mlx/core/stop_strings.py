"""Stop strings matched on decoded text, across token boundaries.

Text that could still be the start of a stop string is held back until the
next piece of text settles it, so a stop string is never emitted, even when it
is split over several tokens.
"""

from __future__ import annotations


class StopStringMatcher:
    def __init__(self, stops: list[str], include_stop: bool = False):
        self.stops = [s for s in stops if s]
        self.include_stop = include_stop
        self._held = ""
        self._longest = max((len(s) for s in self.stops), default=0)

    def feed(self, text: str) -> tuple[str, str | None]:
        """Return (text safe to emit, the stop string that matched or None)."""
        if not self.stops:
            return text, None
        buf = self._held + text
        best: tuple[int, str] | None = None
        for stop in self.stops:
            pos = buf.find(stop)
            if pos != -1 and (best is None or pos < best[0]):
                best = (pos, stop)
        if best is not None:
            pos, stop = best
            self._held = ""
            return buf[: pos + len(stop)] if self.include_stop else buf[:pos], stop
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        """Release whatever was held back (the sequence ended without a match)."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a stop string."""
        for n in range(min(len(buf), self._longest - 1), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0
