"""A fast synthetic vLLM: the OpenAI routes vLLM serves, streaming SSE exactly as vLLM frames it, and a
``/metrics`` page with ``vllm:num_requests_running`` / ``vllm:num_requests_waiting``.

Each request generates ``max_tokens`` tokens (``--tokens`` when absent; a random model seldom stops
early either), one every ``--interval-ms`` after ``--first-token-ms``. With ``--max-num-seqs N`` at most
N requests run and the rest wait, like vLLM's scheduler. A client that disconnects is noticed at once
(``http.disconnect``), and its request stops: the running gauge shows whether a proxy really cancelled.

    python -m gateway.testing.fake_upstream --port 8001 --tokens 32 --interval-ms 5
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send


@dataclass
class FakeConfig:
    model: str = "fake-model"
    tokens: int = 16
    interval: float = 0.005
    first_token_delay: float = 0.0
    max_num_seqs: int = 0  # 0: no limit, nothing waits
    max_model_len: int = 512
    # /metrics answers after this long, as vLLM's API server does while its engine is saturated
    metrics_delay: float = 0.0


class FakeUpstream:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.running = 0
        self.waiting = 0
        self.requests_total = 0
        self.cancelled_total = 0
        self.metrics_reads = 0  # /metrics requests received
        # True: answers 503 on /health and the generation routes, as vLLM does while its engine loads.
        self.loading = False
        # The last prompts received (last message or prompt), oldest first: the order requests came in.
        self.received: collections.deque[str] = collections.deque(maxlen=1000)
        self._slots = anyio.Semaphore(self.config.max_num_seqs) if self.config.max_num_seqs else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # What exists now lives as long as the server: keep full collections short (the
                    # benchmark measures milliseconds against this server's timing).
                    gc.freeze()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        if self.loading and path in ("/health", "/v1/chat/completions", "/v1/completions"):
            await _send_json(send, 503, _error(503, "The model is loading.", "ServiceUnavailableError"))
        elif method == "GET" and path == "/health":
            await _send_json(send, 200, {})
        elif method == "GET" and path == "/metrics":
            self.metrics_reads += 1
            if self.config.metrics_delay:
                await anyio.sleep(self.config.metrics_delay)
            await _send(send, 200, self.metrics_text().encode(), b"text/plain; version=0.0.4")
        elif method == "GET" and path == "/v1/models":
            # As vLLM answers: "root" is where the weights came from (a path or an S3 URI).
            await _send_json(send, 200, {"object": "list", "data": [
                {"id": self.config.model, "object": "model", "created": 0, "owned_by": "vllm",
                 "root": f"s3://models-bucket/{self.config.model}", "parent": None,
                 "max_model_len": self.config.max_model_len,
                 "permission": [{"id": "modelperm-0", "object": "model_permission", "created": 0,
                                 "allow_create_engine": False, "organization": "*", "group": None,
                                 "is_blocking": False}]}]})
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            await self._generate(scope, receive, send, chat=path == "/v1/chat/completions")
        else:
            await _send_json(send, 404, _error(404, "Not Found", "NotFoundError"))

    def metrics_text(self) -> str:
        label = f'{{engine="0",model_name="{self.config.model}"}}'
        return (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{label} {float(self.running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{label} {float(self.waiting)}\n"
            "# HELP fake:requests_total Generation requests received.\n"
            "# TYPE fake:requests_total counter\n"
            f"fake:requests_total {float(self.requests_total)}\n"
            "# HELP fake:cancelled_total Generation requests whose client left before the end.\n"
            "# TYPE fake:cancelled_total counter\n"
            f"fake:cancelled_total {float(self.cancelled_total)}\n"
        )

    async def _generate(self, scope: Scope, receive: Receive, send: Send, chat: bool) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
        except ValueError:
            await _send_json(send, 400, _error(400, "Invalid JSON body", "BadRequestError"))
            return
        if request.get("model", self.config.model) != self.config.model:
            await _send_json(send, 404, _error(404, f"The model `{request.get('model')}` does not exist.",
                                               "NotFoundError", "model"))
            return
        self.requests_total += 1
        messages = request.get("messages")
        chat_last = isinstance(messages, list) and messages and isinstance(messages[-1], dict)
        self.received.append(str(messages[-1].get("content") if chat_last else request.get("prompt")))
        finished = False
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not finished:
                    self.cancelled_total += 1
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                await self._admitted(request, send, chat)
                finished = True
            finally:
                group.cancel_scope.cancel()

    async def _admitted(self, request: dict[str, Any], send: Send, chat: bool) -> None:
        if self._slots is None:
            await self._run(request, send, chat)
            return
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await self._run(request, send, chat)
        finally:
            self._slots.release()

    async def _run(self, request: dict[str, Any], send: Send, chat: bool) -> None:
        self.running += 1
        try:
            if request.get("stream"):
                await self._stream(request, send, chat)
            else:
                await self._complete(request, send, chat)
        finally:
            self.running -= 1

    def _tokens(self, request: dict[str, Any]) -> int:
        wanted = request.get("max_completion_tokens") or request.get("max_tokens")
        return int(wanted) if isinstance(wanted, int) and wanted > 0 else self.config.tokens

    async def _complete(self, request: dict[str, Any], send: Send, chat: bool) -> None:
        tokens = self._tokens(request)
        await anyio.sleep(self.config.first_token_delay + self.config.interval * max(tokens - 1, 0))
        text = "".join(_token(i) for i in range(tokens))
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        await _send_json(send, 200, {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
            "usage": _usage(tokens),
        })

    async def _stream(self, request: dict[str, Any], send: Send, chat: bool) -> None:
        tokens = self._tokens(request)
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        kind, obj = ("chatcmpl", "chat.completion.chunk") if chat else ("cmpl", "text_completion")
        prefix = (f'{{"id":"{kind}-{uuid.uuid4().hex}","object":"{obj}","created":{int(time.time())},'
                  f'"model":"{self.config.model}","choices":[')
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        # Tokens fall due on a fixed clock from the request's start (as a GPU's decode steps do), so a
        # busy event loop delays a token but not every later one: a stream's length stays
        # first-token-ms + (tokens - 1) x interval plus the last token's lateness, which keeps the
        # benchmark's direct and proxied timings comparable.
        started = anyio.current_time()
        await anyio.sleep_until(started + self.config.first_token_delay)
        if chat:
            role = ('{"index":0,"delta":{"role":"assistant","content":""},'
                    '"logprobs":null,"finish_reason":null}')
            await _event(send, prefix + role + "]}")
        for i in range(tokens):
            if i:
                await anyio.sleep_until(started + self.config.first_token_delay + i * self.config.interval)
            finish = '"length"' if i == tokens - 1 else "null"
            text = json.dumps(_token(i))
            part = ('{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":%s}' if chat
                    else '{"index":0,"text":%s,"logprobs":null,"finish_reason":%s}') % (text, finish)
            await _event(send, prefix + part + "]}")
        if include_usage:
            await _event(send, prefix + '],"usage":' + json.dumps(_usage(tokens)) + "}")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _token(index: int) -> str:
    return f"t{index} "


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


def _error(code: int, message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


async def _event(send: Send, data: str) -> None:
    await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(data).encode(), b"application/json")


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="fake_upstream", description="A fast synthetic vLLM for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default=FakeConfig.model)
    parser.add_argument("--tokens", type=int, default=FakeConfig.tokens,
                        help="tokens when max_tokens is absent")
    parser.add_argument("--interval-ms", type=float, default=FakeConfig.interval * 1000)
    parser.add_argument("--first-token-ms", type=float, default=0.0)
    parser.add_argument("--max-num-seqs", type=int, default=0, help="0: no limit")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop (the benchmark uses uvloop: less CPU on the load generator's core)")
    args = parser.parse_args(argv)
    config = FakeConfig(model=args.model, tokens=args.tokens, interval=args.interval_ms / 1000,
                        first_token_delay=args.first_token_ms / 1000, max_num_seqs=args.max_num_seqs)
    uvicorn.run(FakeUpstream(config), host=args.host, port=args.port, log_level="warning", access_log=False,
                loop=args.loop, http="httptools")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
