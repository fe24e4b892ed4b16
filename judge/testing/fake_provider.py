"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) the way instructor's
TOOLS mode expects: a tool call whose arguments are the verdict JSON, named after the tool
the request offered. A request with a JSON-schema ``response_format`` (or neither) gets
the verdict JSON as message content instead.

With no script, every request gets a deterministic valid verdict built from the response
schema in the request: the score, pass flag or label is a function of a hash of the
user message, within the schema's bounds. Tests queue scripted replies instead, optionally
matched on a substring of the user message::

    fake = FakeProvider().start()
    fake.script(verdict(score=4, rationale="fine"), match="item-7")
    fake.script(rate_limit(retry_after=1), server_error(), verdict(score=2))
    ...
    fake.stop()

Run standalone for benchmarks and demos::

    python -m judge.testing.fake_provider --port 8901 --latency-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "FakeProvider",
    "Reply",
    "content",
    "default_verdict",
    "drop",
    "hang",
    "invalid_json",
    "rate_limit",
    "refusal",
    "server_error",
    "verdict",
]


# --- scripted replies --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build it with the helpers below rather than directly."""

    kind: str  # verdict | content | raw_arguments | status | hang | drop | refusal
    payload: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def verdict(data: dict[str, Any] | None = None, **fields: Any) -> Reply:
    """A verdict answered as the tool call's arguments (or as content in JSON mode)."""
    return Reply("verdict", {**(data or {}), **fields})


def content(text: str) -> Reply:
    """A plain assistant message with this content and no tool call."""
    return Reply("content", text)


def invalid_json(text: str = '{"rationale": "cut off') -> Reply:
    """A tool call whose arguments are not JSON."""
    return Reply("raw_arguments", text)


def refusal(text: str = "I'm sorry, but I can't help with evaluating this.") -> Reply:
    """A refusal: no tool call, the ``refusal`` field set and the text as content."""
    return Reply("refusal", text)


def rate_limit(retry_after: float | str | None = 1) -> Reply:
    """HTTP 429, with ``Retry-After`` (seconds or an HTTP date) unless None."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Reply("status", "Rate limit reached for requests", status=429, headers=headers)


def server_error(status: int = 500, message: str = "The server had an error") -> Reply:
    """An HTTP error status with an OpenAI-style error body."""
    return Reply("status", message, status=status)


def hang(seconds: float = 30.0) -> Reply:
    """Wait this long before answering with the default verdict (past any client timeout)."""
    return Reply("hang", None, delay=seconds)


def drop() -> Reply:
    """Close the connection without answering."""
    return Reply("drop")


# --- the default policy ------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema


def _non_null(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s, root) for s in schema[key]]
            real = [s for s in options if s.get("type") != "null"]
            return real[0] if real else options[0]
    return schema


def _fill(name: str, schema: dict[str, Any], root: dict[str, Any], seed: int) -> Any:
    schema = _non_null(schema, root)
    if name in ("abstain",):
        return False
    if name in ("abstain_reason",):
        return None
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "integer" or kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + 4))
        lo, hi = int(lo), int(hi)
        return lo + seed % (hi - lo + 1) if hi >= lo else lo
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "array":
        return []
    if kind == "object":
        return _fill_object(schema, root, seed)
    if name == "rationale":
        return f"Deterministic fake verdict (seed {seed % 1000})."
    return "fake"


def _fill_object(schema: dict[str, Any], root: dict[str, Any], seed: int) -> dict[str, Any]:
    props = schema.get("properties", {})
    return {name: _fill(name, sub, root, seed) for name, sub in props.items()}


def default_verdict(body: dict[str, Any]) -> dict[str, Any]:
    """A valid verdict for the schema the request asks for, derived from a hash of the
    user message so that the same item always gets the same verdict."""
    schema = _request_schema(body) or {"properties": {"rationale": {"type": "string"}}}
    seed = int(hashlib.sha256(_user_text(body).encode()).hexdigest()[:12], 16)
    return _fill_object(schema, schema, seed)


def _request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    if tools:
        return tools[0].get("function", {}).get("parameters")
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt.get("json_schema", {}).get("schema")
    return None


def _tool_name(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    if tools:
        return tools[0].get("function", {}).get("name")
    return None


def _text_of(message: dict[str, Any]) -> str:
    value = message.get("content")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return ""


def _user_text(body: dict[str, Any]) -> str:
    """The first user message: the item (later user messages are instructor's re-asks)."""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            return _text_of(message)
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


# --- the server ----------------------------------------------------------------------------


@dataclass
class _Rule:
    match: str | None
    replies: deque[Reply]
    forever: bool


class FakeProvider:
    """A fake OpenAI-compatible server running on its own event-loop thread.

    Args:
        port: TCP port on 127.0.0.1; 0 picks a free one.
        latency_ms: fixed delay before every answer (asyncio sleep, so requests overlap).
    """

    def __init__(self, port: int = 0, latency_ms: float = 0.0):
        self.port = port
        self.latency_ms = latency_ms
        self.requests: list[dict[str, Any]] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- scripting -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ``api_base`` to give a client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """How many chat-completion requests arrived."""
        return len(self.requests)

    def script(self, *replies: Reply, match: str | None = None, forever: bool = False) -> None:
        """Queue replies, used in order by requests whose user message contains ``match``
        (any request when None). With ``forever`` the replies repeat without end.

        Rules are tried in the order they were added; the first with a reply left wins.
        Requests no rule answers get the default verdict.
        """
        if not replies:
            raise ValueError("script() needs at least one reply")
        with self._lock:
            self._rules.append(_Rule(match, deque(replies), forever))

    def reset(self) -> None:
        """Forget every rule and recorded request (and the latency goes back to 0)."""
        with self._lock:
            self._rules.clear()
            self.requests.clear()
        self.latency_ms = 0.0

    def requests_matching(self, text: str) -> list[dict[str, Any]]:
        """Recorded request bodies whose first user message contains ``text``."""
        return [b for b in list(self.requests) if text in _user_text(b)]

    def _next_reply(self, body: dict[str, Any]) -> Reply | None:
        user = _user_text(body)
        with self._lock:
            self.requests.append(body)
            for rule in self._rules:
                if not rule.replies or (rule.match is not None and rule.match not in user):
                    continue
                reply = rule.replies.popleft()
                if rule.forever:
                    rule.replies.append(reply)
                return reply
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Start serving in a background thread; returns self once it accepts connections."""
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"fake provider failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._loop is None:
            return
        loop = self._loop
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _stats(self, request: web.Request) -> web.Response:
        """``GET /stats``: how many requests were served, for a process outside this one."""
        return web.json_response({"requests": self.count, "latency_ms": self.latency_ms})

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path in ("/v1/chat/completions", "/chat/completions"):
            app.router.add_post(path, self._handle)
        for path in ("/v1/models", "/models"):
            app.router.add_get(path, self._models)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, backlog=4096)
        await site.start()

    # -- handlers --------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "request body is not JSON")
        reply = self._next_reply(body)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if reply is None:
            return _completion(body, "verdict", default_verdict(body))
        if reply.kind == "hang":
            await asyncio.sleep(reply.delay)
            return _completion(body, "verdict", default_verdict(body))
        if reply.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fake provider dropped the connection")
        if reply.kind == "status":
            return _error(reply.status, str(reply.payload), reply.headers)
        return _completion(body, reply.kind, reply.payload)


async def _cancel_pending() -> None:
    """Cancel handlers still sleeping (hangs) so the loop can close cleanly."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(status, "server_error")
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        status=status,
        headers=headers or {},
    )


def _completion(body: dict[str, Any], kind: str, payload: Any) -> web.Response:
    tool = _tool_name(body)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    if kind == "verdict":
        args = json.dumps(copy.deepcopy(payload))
        if tool:
            message["tool_calls"] = [_tool_call(tool, args)]
            finish = "tool_calls"
        else:
            message["content"] = args
    elif kind == "raw_arguments":
        if tool:
            message["tool_calls"] = [_tool_call(tool, str(payload))]
            finish = "tool_calls"
        else:
            message["content"] = str(payload)
    elif kind == "refusal":
        message["content"] = str(payload)
        message["refusal"] = str(payload)
    else:  # plain content
        message["content"] = str(payload)
    out_text = json.dumps(message)
    prompt_tokens = sum(_tokens(_text_of(m)) for m in body.get("messages", []))
    completion_tokens = _tokens(out_text)
    return web.json_response(
        {
            "id": f"chatcmpl-fake-{hashlib.sha256(out_text.encode()).hexdigest()[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:16]
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, or run one command against the fake and exit with its code.

    ``python -m judge.testing.fake_provider --port P`` serves until Ctrl-C;
    ``python -m judge.testing.fake_provider -- judge run ...`` starts the fake, runs the
    command with ``JUDGE_FAKE_API_BASE`` (and a dummy ``OPENAI_API_KEY``) in its environment
    and ``{api_base}`` in its arguments replaced by the fake's URL, then stops the fake.
    """
    import os
    import subprocess
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    args = parser.parse_args(argv)
    fake = FakeProvider(port=args.port, latency_ms=args.latency_ms).start()
    print(f"fake provider listening on {fake.url} (latency {args.latency_ms:g} ms)",
          file=sys.stderr if command else sys.stdout, flush=True)
    try:
        if command:
            env = {**os.environ, "JUDGE_FAKE_API_BASE": fake.url}
            env.setdefault("OPENAI_API_KEY", "fake-key")
            cmd = [part.replace("{api_base}", fake.url) for part in command]
            code = subprocess.call(cmd, env=env)
            raise SystemExit(code)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
