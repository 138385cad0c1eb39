"""The Responses API's store: a bounded, in-memory LRU of finished responses.

Each entry keeps the response object, the request's own input items (what
``GET /v1/responses/{id}/input_items`` lists) and the whole conversation up to and including
its output (what ``previous_response_id`` continues from: the chain's inputs and outputs,
function calls, their outputs and reasoning items, but no ``instructions``). Nothing is
written to disk; a restart forgets every response.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .schemas.responses import ResponseObject


@dataclass
class StoredResponse:
    response: ResponseObject
    input_items: list[dict[str, Any]]  # this request's input, each with an id
    conversation: list[dict[str, Any]]  # the chain's items, then this input, then this output


class ResponsesStore:
    def __init__(self, max_entries: int = 1000):
        self.max_entries = max_entries
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, entry: StoredResponse) -> None:
        with self._lock:
            self._items[entry.response.id] = entry
            self._items.move_to_end(entry.response.id)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            entry = self._items.get(response_id)
            if entry is not None:
                self._items.move_to_end(response_id)
            return entry

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None

    def __len__(self) -> int:
        return len(self._items)
