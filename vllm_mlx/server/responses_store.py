"""The Responses API's store: a bounded LRU of finished responses, with an optional age limit,
in memory or also on disk (``--responses-store-dir``), so ``previous_response_id`` survives a
restart.

Each entry keeps the response object, the request's own input items (what
``GET /v1/responses/{id}/input_items`` lists) and the whole conversation up to and including
its output (what ``previous_response_id`` continues from: the chain's inputs and outputs,
function calls, their outputs and reasoning items, but no ``instructions``).

On disk: one ``<response id>.json`` file per entry, written whole to a temporary file and
renamed (a crash never leaves half a file under a real name). Only ids of the form this
server issues (``resp_`` + letters and digits) ever become file names, so a requested id
can never reach outside the folder. At start the folder is indexed (newest first, by file
time) and entries are read when first asked for; a file that cannot be read or parsed is
logged, removed and treated as absent. Evicting an entry (LRU over ``max_entries``, or older
than ``ttl``) removes its file too.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .schemas.responses import ResponseObject

log = logging.getLogger("vllm_mlx.server")
SAFE_ID = re.compile(r"^resp_[A-Za-z0-9]{1,64}$")
FORMAT = 1


@dataclass
class StoredResponse:
    response: ResponseObject
    input_items: list[dict[str, Any]]  # this request's input, each with an id
    conversation: list[dict[str, Any]]  # the chain's items, then this input, then this output


class _File(msgspec.Struct, kw_only=True):
    format: int
    response: ResponseObject
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]


_decoder = msgspec.json.Decoder(_File)


class ResponsesStore:
    """``max_entries``: the most responses kept (least recently used go first); ``ttl``: seconds
    after which a response is forgotten (0: never); ``directory``: also keep them there."""

    def __init__(self, max_entries: int = 1000, ttl: float = 0.0, directory: str | os.PathLike | None = None):
        self.max_entries, self.ttl = max_entries, ttl
        self.directory = Path(directory) if directory is not None else None
        # id -> (entry, or None while only on disk; the time it was stored)
        self._items: OrderedDict[str, tuple[StoredResponse | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._index()

    # -- disk -------------------------------------------------------------------------------

    def _path(self, response_id: str) -> Path:
        assert self.directory is not None and SAFE_ID.match(response_id)
        return self.directory / f"{response_id}.json"

    def _index(self) -> None:
        found = []
        for p in self.directory.iterdir():
            if p.suffix == ".json" and SAFE_ID.match(p.stem) and p.is_file():
                try:
                    found.append((p.stat().st_mtime, p.stem))
                except OSError:
                    continue
            elif p.name.startswith(".tmp-"):  # left by a crash mid-write
                p.unlink(missing_ok=True)
        for stored_at, rid in sorted(found):
            self._items[rid] = (None, stored_at)
        self._evict()
        log.info("responses store %s: %d stored responses", self.directory, len(self._items))

    def _write(self, entry: StoredResponse) -> None:
        data = msgspec.json.encode(_File(format=FORMAT, response=entry.response, input_items=entry.input_items,
                                         conversation=entry.conversation))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(entry.response.id))
        except OSError as exc:
            log.warning("responses store: cannot write %s: %s", entry.response.id, exc)
            Path(tmp).unlink(missing_ok=True)

    def _read(self, response_id: str) -> StoredResponse | None:
        path = self._path(response_id)
        try:
            f = _decoder.decode(path.read_bytes())
            if f.format != FORMAT or f.response.id != response_id:
                raise ValueError(f"format {f.format}, id {f.response.id!r}")
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            log.warning("responses store: dropping unreadable %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None
        return StoredResponse(response=f.response, input_items=f.input_items, conversation=f.conversation)

    def _forget(self, response_id: str) -> None:
        self._items.pop(response_id, None)
        if self.directory is not None and SAFE_ID.match(response_id):
            self._path(response_id).unlink(missing_ok=True)

    def _evict(self) -> None:
        if self.ttl > 0:
            cutoff = time.time() - self.ttl
            for rid in [rid for rid, (_, at) in self._items.items() if at < cutoff]:
                self._forget(rid)
        while len(self._items) > self.max_entries:
            self._forget(next(iter(self._items)))

    # -- the store ----------------------------------------------------------------------------

    def put(self, entry: StoredResponse) -> None:
        rid = entry.response.id
        with self._lock:
            if self.directory is not None and SAFE_ID.match(rid):
                self._write(entry)
            self._items[rid] = (entry, time.time())
            self._items.move_to_end(rid)
            self._evict()

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            found = self._items.get(response_id)
            if found is None:
                return None
            entry, stored_at = found
            if self.ttl > 0 and stored_at < time.time() - self.ttl:
                self._forget(response_id)
                return None
            if entry is None:
                entry = self._read(response_id)
                if entry is None:
                    self._items.pop(response_id, None)
                    return None
                self._items[response_id] = (entry, stored_at)
            self._items.move_to_end(response_id)
            return entry

    def delete(self, response_id: str) -> bool:
        with self._lock:
            if response_id not in self._items:
                return False
            self._forget(response_id)
            return True

    def __len__(self) -> int:
        return len(self._items)
