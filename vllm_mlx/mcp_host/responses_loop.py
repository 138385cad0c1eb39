"""The server-side MCP tool loop of a Responses request, rendered as Responses output items.

One response may hold several model turns: each is an ordinary request through the one
pipeline (``prepare`` + ``Generation``), over the conversation so far (the stored chain, this
input, then this response's own output items, MCP calls included, converted by
``responses_request.to_messages``). Items, in order:

* ``mcp_list_tools`` per server, unless the conversation already lists that ``server_label``
  (events ``output_item.added``, ``response.mcp_list_tools.in_progress``, ``.completed``,
  ``output_item.done``);
* for each ``mcp_approval_response`` in the input that approves a request of the conversation: the
  call runs first, as an ``mcp_call`` item carrying ``approval_request_id``;
* the model's text, reasoning and client function calls, as without MCP;
* a call of an MCP tool: ``mcp_call`` (``added``, ``response.mcp_call.in_progress``,
  ``response.mcp_call_arguments.delta``/``.done``, ``response.mcp_call.completed``/``.failed``,
  ``output_item.done``), then the model goes on in the same response; or, where the tool
  needs approval, an ``mcp_approval_request`` item, and the response ends there.

A call over ``max_tool_calls`` (or a round over ``--mcp-max-tool-iterations``) is not run: its
``mcp_call`` fails with a protocol error saying why, and the response ends ``incomplete`` with
``incomplete_details.reason`` ``max_tool_calls`` (or ``max_tool_iterations``).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import msgspec
from litestar import Request, Response
from litestar.response import Stream

from ..server.adapters.responses import INCOMPLETE, _Items, base_response
from ..server.adapters.responses_request import item_id, to_chat_request
from ..server.errors import APIError, bad_request, log
from ..server.pipeline import load_media, prepare, reads_images
from ..server.routes.common import new_id, unless_disconnected
from ..server.schemas import responses as R
from ..server.streaming import SSE_HEADERS
from .host import CallOutcome
from .responses_plan import ResponsesMcpPlan, plan_response_mcp

_PROTOCOL_CODES = {"invalid_arguments": -32602, "timeout": -32001, "connection_lost": -32000}


async def mcp_response(request: Request, state: Any, req: R.ResponsesRequest, past: list[dict],
                       items: list[dict], on_done) -> Response:
    """The Responses route hands a request with ``{"type": "mcp"}`` tools over to here."""
    plan = await plan_response_mcp(state, req)
    try:
        run = McpResponse(state, req, plan, past, items, on_done)
        await run.check()  # a bad input or a prompt that cannot fit: 400 before anything runs or streams
    except BaseException:
        await plan.close()
        raise
    if req.stream:
        return Stream(run.stream(), media_type="text/event-stream", headers=SSE_HEADERS)
    return await unless_disconnected(request, run.complete())


def _not_run(limit: str) -> dict:
    return {"type": "mcp_protocol_error", "code": -32603, "message": f"not run: this response reached its {limit} "
                                                                     "limit"}


def _redacted(tool: Any) -> Any:
    if not isinstance(tool, dict) or tool.get("type") != "mcp":
        return tool
    out = {k: v for k, v in tool.items() if k != "authorization"}
    if isinstance(out.get("headers"), dict):
        out["headers"] = {k: "<redacted>" for k in out["headers"]}
    return out


class McpResponse:
    def __init__(self, state: Any, req: R.ResponsesRequest, plan: ResponsesMcpPlan, past: list[dict],
                 items: list[dict], on_done):
        self.state, self.req, self.plan, self.on_done = state, req, plan, on_done
        self.past, self.items = past, items
        self.out = _Items(tools=True)
        self.created_at = time.time()
        self.rid = new_id("resp")
        self.model = req.model or state.settings.served_model_name
        self.prompt_tokens = self.output_tokens = self.cached_tokens = 0
        self.calls_run = 0
        self.approvals = self._approvals()
        # the request as the response echoes (and the store keeps) it: no secrets of MCP entries
        self.echoed = msgspec.structs.replace(req, tools=[_redacted(t) for t in req.tools or []])

    # -- checks -----------------------------------------------------------------

    def _conversation(self) -> list[dict]:
        return self.past + self.items + [msgspec.to_builtins(o) for o in self.out.output]

    async def _turn_request(self, room: int | None) -> Any:
        """One turn's ``ChatRequest``; a vision model's images fetched and processed (again each turn:
        the encoder cache spares re-encoding them)."""
        chat = to_chat_request(msgspec.structs.replace(self.req, tools=self.plan.function_tools, tool_choice=None,
                                                       max_output_tokens=room), self._conversation(),
                               vision=reads_images(self.state))
        await load_media(self.state, chat)
        return chat

    async def check(self) -> None:
        prepare(self.state, await self._turn_request(self.req.max_output_tokens))

    def _approvals(self) -> list[tuple[dict, str | None]]:
        """(approval request, function name) for each approving mcp_approval_response of this input."""
        requests = {i["id"]: i for i in self.past + self.items if i["type"] == "mcp_approval_request"}
        done = {i.get("approval_request_id") for i in self.past + self.items if i["type"] == "mcp_call"}
        out = []
        for n, item in enumerate(self.items):
            if item["type"] != "mcp_approval_response":
                continue
            asked = requests.get(item["approval_request_id"])
            if asked is None:
                raise bad_request(f"input[{n}].approval_request_id {item['approval_request_id']!r}: no "
                                  "mcp_approval_request with this id in the conversation (send "
                                  "previous_response_id)", param="input")
            if not item["approve"] or asked["id"] in done:
                continue
            fn = self.plan.by_label_and_name(asked["server_label"], asked["name"])
            if fn is None:
                raise bad_request(f"input[{n}]: the approved call is of tool {asked['name']!r} of MCP server "
                                  f"{asked['server_label']!r}, which this request's tools do not offer",
                                  param="tools")
            out.append((asked, fn))
        return out

    # -- items --------------------------------------------------------------------

    def _list_tools(self) -> list[bytes]:
        listed = {i["server_label"] for i in self.past + self.items if i["type"] == "mcp_list_tools"}
        out: list[bytes] = []
        for use in self.plan.servers:
            if use.label in listed:
                continue
            item = R.McpListToolsItem(id=item_id("mcpl"), server_label=use.label)
            out += self._add(item)
            out.append(self.out.event(R.McpListToolsInProgress(item_id=item.id, output_index=self.out.index)))
            item.tools = [R.McpListedTool(**t) for t in use.listing]
            out.append(self.out.event(R.McpListToolsCompleted(item_id=item.id, output_index=self.out.index)))
            out.append(self.out.event(R.ItemDone(output_index=self.out.index, item=item)))
        return out

    def _add(self, item: Any) -> list[bytes]:
        out = self.out.close()
        self.out.output.append(item)
        return out + [self.out.event(R.ItemAdded(output_index=self.out.index, item=item))]

    def _call_started(self, label: str, name: str, arguments: str, approval: str | None = None) -> list[bytes]:
        item = R.McpCallItem(id=item_id("mcp"), server_label=label, name=name, arguments="", status="in_progress",
                             approval_request_id=approval)
        out = self._add(item)
        i = self.out.index
        out.append(self.out.event(R.McpCallInProgress(item_id=item.id, output_index=i)))
        if arguments:
            out.append(self.out.event(R.McpArgumentsDelta(item_id=item.id, output_index=i, delta=arguments)))
        item.arguments = arguments
        out.append(self.out.event(R.McpArgumentsDone(item_id=item.id, output_index=i, arguments=arguments)))
        return out

    def _call_ended(self, output: str | None, error: dict | None) -> list[bytes]:
        item, i = self.out.output[-1], self.out.index
        item.output, item.error = output, error
        item.status = "failed" if error else "completed"
        ended = R.McpCallFailed if error else R.McpCallCompleted
        return [self.out.event(ended(item_id=item.id, output_index=i)),
                self.out.event(R.ItemDone(output_index=i, item=item))]

    async def _run_call(self, fn: str, arguments: str) -> tuple[str | None, dict | None]:
        host, tool, _ = self.plan.hosted[fn]
        timeout = max(0.1, self.plan.deadline - time.monotonic())
        done: CallOutcome = await host.call(tool, arguments, timeout=timeout, request_id=self.rid)
        self.calls_run += 1
        if done.outcome == "ok":
            return done.output or "", None
        if done.outcome == "tool_error":
            return done.output, {"type": "mcp_tool_execution_error", "content": done.content}
        return None, {"type": "mcp_protocol_error", "code": _PROTOCOL_CODES.get(done.outcome, -32603),
                      "message": done.error or done.outcome}

    # -- the loop -----------------------------------------------------------------

    async def events(self) -> AsyncIterator[bytes]:
        """Every SSE event of the response; ``self.body`` holds the final response at the end."""
        state, plan, out = self.state, self.plan, self.out
        yield out.event(R.Created(response=self._body("in_progress")))
        yield out.event(R.InProgress(response=self._body("in_progress")))
        chunk = self._list_tools()
        if chunk:
            yield b"".join(chunk)
        status, reason = "completed", None
        for asked, fn in self.approvals:
            yield b"".join(self._call_started(asked["server_label"], asked["name"], asked["arguments"],
                                              approval=asked["id"]))
            if plan.max_calls is not None and self.calls_run >= plan.max_calls:
                status, reason = "incomplete", "max_tool_calls"
                yield b"".join(self._call_ended(None, _not_run("max_tool_calls")))
                continue
            yield b"".join(self._call_ended(*await self._run_call(fn, asked["arguments"])))
        budget = self.req.max_output_tokens
        turns = plan.iterations + 1 if reason is None else 0  # an approved call over the limit: no model turn
        for turn in range(turns):
            if turn and time.monotonic() >= plan.deadline:
                status, reason = "incomplete", "mcp_total_timeout"
                break
            gen = await prepare(state, await self._turn_request(budget)).start(check=turn == 0)
            mcp_calls: dict[int, list] = {}  # piece index -> [function name, arguments]
            client_calls = False
            outcome = "end"
            events = gen.deltas()
            try:
                async for d in events:
                    chunk = []
                    if d.reasoning:
                        chunk += out.add_reasoning(d.reasoning)
                    if d.text:
                        chunk += out.add_text(d.text)
                    for piece in d.tool_calls:
                        if piece.name is not None and piece.name in plan.hosted:
                            mcp_calls[piece.index] = [piece.name, piece.arguments or ""]
                        elif piece.index in mcp_calls:
                            mcp_calls[piece.index][1] += piece.arguments or ""
                        else:
                            client_calls = True
                            chunk += out.add_call_piece(piece)
                    if d.finish_reason is not None:
                        outcome = gen.outcome(d.finish_reason, d.stop_reason, bool(mcp_calls) or client_calls)
                        chunk += out.finish("incomplete" if outcome in INCOMPLETE else "completed")
                    if chunk:
                        yield b"".join(chunk)
            finally:
                await events.aclose()
            self.prompt_tokens += gen.prompt_tokens
            self.output_tokens += gen.output_tokens
            self.cached_tokens += min(gen.cached_tokens, gen.prompt_tokens)
            if budget is not None:
                budget -= gen.output_tokens
            if outcome in INCOMPLETE:
                status, reason = "incomplete", "max_output_tokens"
                break
            if not mcp_calls:
                break
            stop = client_calls
            for fn, arguments in mcp_calls.values():
                _, tool, approval = plan.hosted[fn]
                if approval:
                    item = R.McpApprovalRequestItem(id=item_id("mcpr"), server_label=tool.server, name=tool.tool,
                                                    arguments=arguments)
                    yield b"".join(self._add(item) + [out.event(R.ItemDone(output_index=out.index, item=item))])
                    stop = True
                    continue
                limit = None
                if plan.max_calls is not None and self.calls_run >= plan.max_calls:
                    limit = "max_tool_calls"
                elif turn >= plan.iterations:
                    limit = "max_tool_iterations"
                yield b"".join(self._call_started(tool.server, tool.tool, arguments))
                if limit is not None:
                    status, reason, stop = "incomplete", limit, True
                    yield b"".join(self._call_ended(None, _not_run(limit)))
                    continue
                yield b"".join(self._call_ended(*await self._run_call(fn, arguments)))
            if stop or (budget is not None and budget < 1):
                if not stop:
                    status, reason = "incomplete", "max_output_tokens"
                break
        body = self._body(status)
        if reason is not None:
            body.incomplete_details = R.IncompleteDetails(reason=reason)
        self.on_done(body)
        self.body = body
        yield out.event(R.Incomplete(response=body) if status == "incomplete" else R.Completed(response=body))

    def _body(self, status: str) -> R.ResponseObject:
        body = base_response(self, self.echoed, status, self.created_at, list(self.out.output))
        if status != "in_progress":
            body.usage = self._usage()
        return body

    def _usage(self) -> R.Usage:
        tok = self.state.engine.tokenizer
        reasoning = len(tok.encode(self.out.reasoning, add_special_tokens=False)) if self.out.reasoning else 0
        return R.Usage(input_tokens=self.prompt_tokens,
                       input_tokens_details=R.InputTokensDetails(cached_tokens=self.cached_tokens),
                       output_tokens=self.output_tokens,
                       output_tokens_details=R.OutputTokensDetails(reasoning_tokens=min(reasoning,
                                                                                       self.output_tokens)),
                       total_tokens=self.prompt_tokens + self.output_tokens)

    async def stream(self) -> AsyncIterator[bytes]:
        """The SSE stream; a failure after ``response.created`` ends it with ``response.failed``."""
        events = self.events()
        try:
            async for chunk in events:
                yield chunk
        except Exception as exc:  # noqa: BLE001 - tell the client, never a fake completion
            if not isinstance(exc, APIError):
                log.exception("MCP response failed")
                exc = APIError(500, f"generation failed: {type(exc).__name__}: {exc}")
            chunk = self.out.close("incomplete")
            body = self._body("failed")
            body.error = R.ResponseError(code="server_error", message=exc.message)
            chunk.append(self.out.event(R.Failed(response=body)))
            yield b"".join(chunk)
        finally:
            await events.aclose()
            await self.plan.close()

    async def complete(self) -> Response:
        try:
            async for _ in self.events():
                pass
        finally:
            await self.plan.close()
        return Response(content=msgspec.json.encode(self.body), media_type="application/json")
