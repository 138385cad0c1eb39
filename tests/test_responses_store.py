"""The Responses store: bounded (LRU, age), and with --responses-store-dir kept on disk so
previous_response_id survives a restart of the real server; corrupt files and hostile ids
never hurt it."""

from __future__ import annotations

import json
import os
import time

import openai
import pytest

from vllm_mlx.server.responses_store import ResponsesStore, StoredResponse
from vllm_mlx.server.schemas.responses import ResponseObject


def entry(n: int | str) -> StoredResponse:
    rid = f"resp_{n}" if isinstance(n, int) else n
    body = ResponseObject(id=rid, created_at=1.0, model="m", status="completed")
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"hi {n}"}], "id": "m1"}
    return StoredResponse(response=body, input_items=[item], conversation=[item])


def files(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_a_restarted_store_finds_its_responses(tmp_path):
    store = ResponsesStore(directory=tmp_path)
    store.put(entry(1))
    store.put(entry(2))
    again = ResponsesStore(directory=tmp_path)
    assert len(again) == 2
    got = again.get("resp_1")
    assert got.response.id == "resp_1" and got.conversation == entry(1).conversation
    assert again.delete("resp_2") and files(tmp_path) == ["resp_1.json"]
    assert ResponsesStore(directory=tmp_path).get("resp_2") is None


def test_the_store_is_bounded_on_disk_too(tmp_path):
    store = ResponsesStore(max_entries=2, directory=tmp_path)
    for n in range(3):
        store.put(entry(n))
        time.sleep(0.01)
    assert files(tmp_path) == ["resp_1.json", "resp_2.json"] and store.get("resp_0") is None
    store.get("resp_1")  # used: resp_2 is now the least recently used
    store.put(entry(3))
    assert files(tmp_path) == ["resp_1.json", "resp_3.json"]
    os.utime(tmp_path / "resp_1.json", (1, 1))  # oldest on disk: the first to go when a restart finds too many
    assert files(tmp_path) == ["resp_1.json", "resp_3.json"]
    ResponsesStore(max_entries=1, directory=tmp_path)
    assert files(tmp_path) == ["resp_3.json"]


def test_old_responses_expire(tmp_path):
    store = ResponsesStore(ttl=0.2, directory=tmp_path)
    store.put(entry(1))
    assert store.get("resp_1") is not None
    time.sleep(0.3)
    assert store.get("resp_1") is None and files(tmp_path) == []
    store.put(entry(2))
    os.utime(tmp_path / "resp_2.json", (time.time() - 10, time.time() - 10))
    assert len(ResponsesStore(ttl=5, directory=tmp_path)) == 0 and files(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": 1}', b"[1, 2]",
                                     json.dumps({"format": 99, "response": {}, "input_items": [],
                                                 "conversation": []}).encode()])
def test_a_corrupt_file_is_dropped(tmp_path, content):
    ResponsesStore(directory=tmp_path).put(entry(1))
    (tmp_path / "resp_1.json").write_bytes(content)
    store = ResponsesStore(directory=tmp_path)
    assert store.get("resp_1") is None and files(tmp_path) == [] and len(store) == 0


def test_a_file_under_another_id_is_not_trusted(tmp_path):
    ResponsesStore(directory=tmp_path).put(entry(1))
    (tmp_path / "resp_1.json").rename(tmp_path / "resp_9.json")
    assert ResponsesStore(directory=tmp_path).get("resp_9") is None


def test_only_safe_ids_become_file_names(tmp_path):
    (tmp_path / "secret.json").write_text("{}")
    (tmp_path / ".tmp-abc").write_text("half")  # left by a crash mid-write
    store = ResponsesStore(directory=tmp_path / "store")
    for bad in ["../secret", "resp_../../x", "resp_a/b", "resp_", "resp_x.json", "/etc/passwd"]:
        assert store.get(bad) is None and not store.delete(bad)
    store.put(entry("resp_../../evil"))  # never a server id; kept in memory only
    assert files(tmp_path / "store") == [] and store.get("resp_../../evil") is not None
    assert (tmp_path / "secret.json").exists()
    ResponsesStore(directory=tmp_path)
    assert files(tmp_path) == ["secret.json", "store"]  # the leftover temporary file is gone


@pytest.fixture
def restartable(mcp_model_dir, mcp_stack, tmp_path):
    """Start (and restart) a server on the MCP model with a store folder, allowed to reach the
    stack's streamable-HTTP toolbox."""
    from server_process import ServerProcess

    procs = []

    def start():
        if procs:
            procs[-1].stop()
        procs.append(ServerProcess([str(mcp_model_dir), "--tool-call-parser", "hermes", "--mcp-allowed-urls",
                                    "127.0.0.1", "--responses-store-dir", str(tmp_path / "store")],
                                   log_path=tmp_path / f"server{len(procs)}.log").wait_ready())
        return openai.OpenAI(base_url=procs[-1].url + "/v1", api_key="x", max_retries=0, timeout=120)

    yield start, tmp_path / "store"
    procs[-1].stop()


def test_previous_response_id_survives_a_restart(restartable, mcp_stack):
    start, store_dir = restartable
    url = json.loads((mcp_stack.audit_log.parent / "mcp.json").read_text())["mcpServers"]["web"]["url"]
    tools = [{"type": "mcp", "server_label": "web", "server_url": url, "allowed_tools": ["read_file"],
              "require_approval": "always"}]
    client = start()
    first = client.responses.create(model="default", input="What is in todo.txt?", tools=tools, temperature=0,
                                    max_output_tokens=60)
    assert [o.type for o in first.output] == ["mcp_list_tools", "mcp_approval_request"]
    (store_dir / "resp_0123abc.json").write_text("{broken")  # a corrupt neighbour is tolerated
    client = start()
    assert client.responses.retrieve(first.id).model_dump() == first.model_dump()
    second = client.responses.create(model="default", previous_response_id=first.id, tools=tools, temperature=0,
                                     max_output_tokens=60, input=[{"type": "mcp_approval_response",
                                                                   "approval_request_id": first.output[1].id,
                                                                   "approve": True}])
    assert [o.type for o in second.output] == ["mcp_call", "message"]
    assert second.output_text == "todo.txt says: Call Alice at noon."
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_0123abc")
    assert not (store_dir / "resp_0123abc.json").exists()
    client.responses.delete(first.id)
    client = start()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    assert [i.type for i in client.responses.input_items.list(second.id).data] == ["mcp_approval_response"]
