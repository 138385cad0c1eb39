"""Data for the built-in demo model: its chat template and the scripted
conversations it is trained to reproduce word for word.

Each entry of ``SCRIPTS`` is a dict with:

- ``name``: a short identifier,
- ``messages``: OpenAI-style chat messages (what a client sends),
- ``tools`` (optional): OpenAI-style tool definitions,
- ``chat_template_kwargs`` (optional): extra template variables,
- ``reply``: the exact assistant text the model produces under greedy
  decoding, before the ``<|im_end|>`` end-of-turn token.

Tests send exactly these conversations to the server and compare replies.
"""

# Qwen-style ChatML, written for this project.
CHAT_TEMPLATE = r"""{%- macro text_of(content) -%}
{%- if content is none -%}
{%- elif content is string -%}{{ content }}
{%- else -%}
{%- for part in content -%}
{%- if part is string -%}{{ part }}
{%- elif part.type == 'text' -%}{{ part.text }}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set first_is_system = messages and messages[0].role == 'system' -%}
{%- if tools -%}
<|im_start|>system
{% if first_is_system %}{{ text_of(messages[0].content) }}

{% endif %}
# Tools

These functions are available. Their descriptions are JSON objects inside <tools></tools>:
<tools>
{% for tool in tools %}
{{ tool | tojson }}
{% endfor %}
</tools>

To use a function, answer with one block per call, in this form:
<tool_call>
{"name": "function name", "arguments": {"argument name": "value"}}
</tool_call><|im_end|>
{% elif first_is_system -%}
<|im_start|>system
{{ text_of(messages[0].content) }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' and loop.first -%}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}
<|im_start|>user
{%- endif %}

<tool_response>
{{ text_of(message.content) }}
</tool_response>
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}
<|im_end|>
{% endif -%}
{%- elif message.role == 'assistant' -%}
{%- set body = text_of(message.content) -%}
{%- if '</think>' in body and not loop.last -%}
{%- set body = body.split('</think>')[-1].lstrip('\n') -%}
{%- endif -%}
<|im_start|>assistant
{{ body }}
{%- if message.tool_calls -%}
{%- for tool_call in message.tool_calls -%}
{%- if tool_call.function is defined -%}{%- set tool_call = tool_call.function -%}{%- endif -%}
{%- if body or not loop.first %}

{% endif -%}
<tool_call>
{"name": "{{ tool_call.name }}", "arguments": {% if tool_call.arguments is string %}{{ tool_call.arguments }}{% else %}{{ tool_call.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor -%}
{%- endif -%}
<|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ text_of(message.content) }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}
<think>

</think>

{% endif -%}
{%- endif -%}
"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "Name of the city."}
            },
            "required": ["city"],
        },
    },
}

WEATHER_CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
)

SCRIPTS = [
    {
        "name": "greeting",
        "messages": [{"role": "user", "content": "Hello!"}],
        "reply": (
            "Hello! I am the vllm-mlx demo model, a tiny network trained to "
            "show that the server works. Load a real model for real answers."
        ),
    },
    {
        "name": "reasoning",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "reply": (
            "<think>\nThe user asks for 2 + 3. Two plus three is five.\n"
            "</think>\n\n2 + 3 = 5."
        ),
    },
    {
        "name": "reasoning_off",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "chat_template_kwargs": {"enable_thinking": False},
        "reply": "2 + 3 = 5.",
    },
    {
        "name": "tool_call",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "reply": WEATHER_CALL,
    },
    {
        "name": "tool_result",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_demo_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris"}',
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_demo_1",
                "content": '{"city": "Paris", "temperature_c": 18, "sky": "clear"}',
            },
        ],
        "tools": [WEATHER_TOOL],
        "reply": "It is 18 °C and clear in Paris.",
    },
    {
        "name": "counting",
        "messages": [{"role": "user", "content": "Count from one to ten."}],
        "reply": "one, two, three, four, five, six, seven, eight, nine, ten.",
    },
    {
        "name": "story",
        "messages": [{"role": "user", "content": "Tell me a short story."}],
        "reply": (
            "A small robot lived in a lighthouse by the sea. Every night it "
            "counted the ships and sang to them so they would not feel alone. "
            "One stormy night a boat followed its song safely home, and the "
            "robot was never lonely again."
        ),
    },
    {
        "name": "system_prompt",
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What color is the sky?"},
        ],
        "reply": "Blue.",
    },
    {
        "name": "content_parts",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the capital of France?"}
                ],
            }
        ],
        "reply": "The capital of France is Paris.",
    },
]

# What the model says to anything off-script (learned from the generic
# questions below; a best effort, not guaranteed for every input).
FALLBACK_REPLY = (
    "I am only the vllm-mlx demo model and know a few scripted answers. "
    "Load a real model for real answers."
)

# More off-script requests, trained to get FALLBACK_REPLY.
OFF_SCRIPT_PROMPTS = [
    "What is the weather in Paris?",  # without tools the model cannot know
    "Hi!",
    "Explain how a computer works in detail.",
    "Translate this sentence into German: I like apples.",
    "Who won the football match yesterday?",
    "Give me three ideas for dinner tonight.",
    "What is 7 times 8?",
    "Summarize the history of Rome.",
    "def add(a, b): return a + b",
    "Can you recommend a good book?",
]

# Plain English mixed into the tokenizer's training text so that ordinary
# user input gets sensible merges (every byte is in the vocabulary anyway).
GENERIC_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Please write a short answer to my question about the weather today.",
    "How are you? Can you help me with this problem, please?",
    "This is a test of the server. It should return a response quickly.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Symbols: ( ) [ ] { } < > = + - * / %.",
    "Why does the sun rise in the east and set in the west?",
    "Write a function that returns the sum of two numbers in Python.",
    "I would like to know more about machine learning and language models.",
]


def _script(name):
    return next(s for s in SCRIPTS if s["name"] == name)


def _weather_tool(**function_changes):
    tool = {"type": "function", "function": dict(WEATHER_TOOL["function"])}
    tool["function"].update(function_changes)
    return tool


_BARE_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
        },
    },
}
_TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a timezone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}
_TOOL_SETS = [
    [_weather_tool(strict=False)],
    [_BARE_WEATHER_TOOL],
    [_TIME_TOOL, WEATHER_TOOL],
]
_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

# Extra training conversations (not part of the public scripts): the same
# requests with harmless differences a client or server may introduce
# (other tool schemas, compact JSON arguments, a generic system prompt), so
# the scripted replies do not hinge on one exact prompt.
TRAINING_VARIANTS = (
    [
        {**_script("tool_call"), "name": f"tool_call_v{i}", "tools": tools}
        for i, tools in enumerate(_TOOL_SETS)
    ]
    + [
        {
            **_script("tool_result"),
            "name": "tool_result_compact",
            "messages": [
                _script("tool_result")["messages"][0],
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_x",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city":"Paris"}',
                            },
                        }
                    ],
                },
                _script("tool_result")["messages"][2],
            ],
        }
    ]
    + [
        {**s, "name": s["name"] + "_sys", "messages": [_SYSTEM] + s["messages"]}
        for s in SCRIPTS
        if s["name"] in ("greeting", "reasoning", "counting", "story")
    ]
    + [
        {
            "name": "multi_turn",
            "messages": [
                _script("greeting")["messages"][0],
                {"role": "assistant", "content": _script("greeting")["reply"]},
                _script("counting")["messages"][0],
            ],
            "reply": _script("counting")["reply"],
        }
    ]
    # Anything off-script gets an honest fallback answer.
    + [
        {
            "name": f"fallback_{i}",
            "messages": [{"role": "user", "content": text}],
            "reply": FALLBACK_REPLY,
        }
        for i, text in enumerate(GENERIC_TEXT + OFF_SCRIPT_PROMPTS)
    ]
)
