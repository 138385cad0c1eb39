"""OpenAI Responses wire schemas (``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``), as the ``openai`` SDK (3.57) sends and parses them.

Unknown body fields (``include``, ``truncation``, ``service_tier``, ``prompt_cache_key``, ...)
are ignored. Input items arrive as JSON objects and are checked against the item Structs
below one by one (an item with a ``role`` and no ``type`` is a message, as the SDK allows).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

# -- request ------------------------------------------------------------------------------


class TextConfig(msgspec.Struct, kw_only=True):
    format: dict[str, Any] | None = None  # {"type": "text" | "json_object" | "json_schema", ...}
    verbosity: str | None = None


class ReasoningConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    background: bool | None = None
    user: str | None = None
    max_tool_calls: int | None = None  # MCP calls one response may run (tools of type "mcp")
    ignore_eos: bool = False  # vLLM's extension (benchmarks: every reply makes exactly max_output_tokens tokens)


# -- input items (also what the store keeps and input_items lists) ----------------------------


class InputText(msgspec.Struct, kw_only=True, tag_field="type", tag="input_text"):
    text: str


class OutputText(msgspec.Struct, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class Refusal(msgspec.Struct, kw_only=True, tag_field="type", tag="refusal"):
    refusal: str


class InputImage(msgspec.Struct, kw_only=True, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, kw_only=True, tag_field="type", tag="input_file"):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


ContentPart = Union[InputText, OutputText, Refusal, InputImage, InputFile]


class MessageItem(msgspec.Struct, kw_only=True, tag_field="type", tag="message"):
    role: str  # user, assistant, system, developer
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(msgspec.Struct, kw_only=True, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(msgspec.Struct, kw_only=True, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class SummaryText(msgspec.Struct, kw_only=True, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(msgspec.Struct, kw_only=True, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(msgspec.Struct, kw_only=True, tag_field="type", tag="reasoning"):
    id: str | None = None
    summary: list[SummaryText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class ItemReference(msgspec.Struct, kw_only=True, tag_field="type", tag="item_reference"):
    id: str


# -- MCP items (tools of type "mcp"): output items, and input items when a client resends them --------


class McpListedTool(msgspec.Struct, kw_only=True):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None


class McpListToolsItem(msgspec.Struct, kw_only=True, tag_field="type", tag="mcp_list_tools"):
    id: str
    server_label: str
    tools: list[McpListedTool] = []
    error: str | None = None


class McpCallItem(msgspec.Struct, kw_only=True, tag_field="type", tag="mcp_call"):
    id: str
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    # {"type": "mcp_tool_execution_error", "content"} | {"type": "mcp_protocol_error", "code", "message"}
    error: dict[str, Any] | None = None
    status: str | None = None
    approval_request_id: str | None = None


class McpApprovalRequestItem(msgspec.Struct, kw_only=True, tag_field="type", tag="mcp_approval_request"):
    id: str
    server_label: str
    name: str
    arguments: str


class McpApprovalResponseItem(msgspec.Struct, kw_only=True, tag_field="type", tag="mcp_approval_response"):
    approval_request_id: str
    approve: bool
    id: str | None = None
    reason: str | None = None


InputItem = Union[MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem, ItemReference,
                  McpListToolsItem, McpCallItem, McpApprovalRequestItem, McpApprovalResponseItem]


# -- output ---------------------------------------------------------------------------------------


class OutputMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="message"):
    id: str
    role: str = "assistant"
    status: str = "completed"
    content: list[OutputText] = []


class OutputFunctionCall(msgspec.Struct, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: str = "completed"


class OutputReasoning(msgspec.Struct, kw_only=True, tag_field="type", tag="reasoning"):
    id: str
    summary: list[SummaryText] = []
    content: list[ReasoningText] = []
    status: str = "completed"


OutputItem = Union[OutputMessage, OutputFunctionCall, OutputReasoning, McpListToolsItem, McpCallItem,
                   McpApprovalRequestItem]


class InputTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(msgspec.Struct, kw_only=True):
    reason: str  # "max_output_tokens"


class ResponseError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ResponseObject(msgspec.Struct, kw_only=True):
    id: str
    object: str = "response"
    created_at: float
    model: str
    status: str  # in_progress, completed, incomplete, failed
    output: list[OutputItem] = []
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] = []
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    store: bool = True
    background: bool = False
    truncation: str = "disabled"
    metadata: dict[str, str] = {}
    max_tool_calls: int | None = None
    usage: Usage | None = None


class DeletedResponse(msgspec.Struct, kw_only=True):
    id: str
    object: str = "response.deleted"
    deleted: bool = True


class InputItemList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


# -- stream events (each SSE frame: "event: <type>" + "data: <json>"; every event has sequence_number) --


class _Event(msgspec.Struct, kw_only=True, tag_field="type"):
    sequence_number: int = 0


class Created(_Event, kw_only=True, tag="response.created"):
    response: ResponseObject


class InProgress(_Event, kw_only=True, tag="response.in_progress"):
    response: ResponseObject


class Completed(_Event, kw_only=True, tag="response.completed"):
    response: ResponseObject


class Incomplete(_Event, kw_only=True, tag="response.incomplete"):
    response: ResponseObject


class Failed(_Event, kw_only=True, tag="response.failed"):
    response: ResponseObject


class ItemAdded(_Event, kw_only=True, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class ItemDone(_Event, kw_only=True, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class PartAdded(_Event, kw_only=True, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: Union[OutputText, ReasoningText]


class PartDone(_Event, kw_only=True, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: Union[OutputText, ReasoningText]


class TextDelta(_Event, kw_only=True, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class TextDone(_Event, kw_only=True, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class ReasoningDelta(_Event, kw_only=True, tag="response.reasoning_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningDone(_Event, kw_only=True, tag="response.reasoning_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str


class ArgumentsDelta(_Event, kw_only=True, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(_Event, kw_only=True, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class McpListToolsInProgress(_Event, kw_only=True, tag="response.mcp_list_tools.in_progress"):
    item_id: str
    output_index: int


class McpListToolsCompleted(_Event, kw_only=True, tag="response.mcp_list_tools.completed"):
    item_id: str
    output_index: int


class McpCallInProgress(_Event, kw_only=True, tag="response.mcp_call.in_progress"):
    item_id: str
    output_index: int


class McpCallCompleted(_Event, kw_only=True, tag="response.mcp_call.completed"):
    item_id: str
    output_index: int


class McpCallFailed(_Event, kw_only=True, tag="response.mcp_call.failed"):
    item_id: str
    output_index: int


class McpArgumentsDelta(_Event, kw_only=True, tag="response.mcp_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class McpArgumentsDone(_Event, kw_only=True, tag="response.mcp_call_arguments.done"):
    item_id: str
    output_index: int
    arguments: str
