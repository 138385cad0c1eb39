"""What each API's stream renderer costs per text delta, in-process (no HTTP, no engine): chat vs
messages vs responses, each fed the same 128 deltas from a stub generation, interleaved repeats,
medians; then the bytes each sends per delta. See docs/benchmarks/README.md (issue 10).

    python scripts/adapter-cost.py [REPEATS]
"""
import asyncio, statistics, sys, time
from types import SimpleNamespace
from vllm_mlx.core.output import SequenceDelta
from vllm_mlx.server.pipeline import Generation
from vllm_mlx.server.adapters.chat import stream_chat
from vllm_mlx.server.adapters.anthropic import stream_message
from vllm_mlx.server.adapters.responses import stream_response
from vllm_mlx.server.schemas.responses import ResponsesRequest

N = 128

class FakeGen:
    outcome = Generation.outcome
    def __init__(self):
        self.rid, self.model, self.params = "chatcmpl-abc123", "m", SimpleNamespace(n=1)
        self.plan, self.clamped = SimpleNamespace(tool_mode="auto"), False
        self.prompt_tokens, self.output_tokens, self.cached_tokens = 169, N, 0
        self.state = SimpleNamespace(engine=SimpleNamespace(tokenizer=None))
    async def deltas(self):
        for i in range(N):
            yield SequenceDelta(index=0, text=" word", num_tokens=i + 1)
        yield SequenceDelta(index=0, finish_reason="length", num_tokens=N)

async def consume(make):
    t = time.perf_counter()
    async for _ in make(FakeGen()):
        pass
    return time.perf_counter() - t

req = ResponsesRequest(model="m", input="hi", stream=True)
apis = {"chat": lambda g: stream_chat(g, True), "messages": lambda g: stream_message(g, 10.0),
        "responses": lambda g: stream_response(g, req, lambda body: None)}
res = {a: [] for a in apis}
async def main():
    for _ in range(20):
        for a, f in apis.items():
            await consume(f)
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 300):
        for a, f in apis.items():
            res[a].append(await consume(f))
asyncio.run(main())
for a, v in res.items():
    print(f"{a:10s} {statistics.median(v) / (N + 1) * 1e6:.2f} us/delta (median of {len(v)})")

async def size(make):
    n = 0
    async for b in make(FakeGen()):
        n += len(b)
    return n
for a, f in apis.items():
    print(f"{a:10s} {asyncio.run(size(f)) / N:.0f} bytes/delta")
