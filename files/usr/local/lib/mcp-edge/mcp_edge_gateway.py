#!/usr/bin/env python3
"""mcp-edge gateway: one stdio MCP server behind HTTP, one child process per session.

What: serves a stdio MCP server (newline-delimited JSON-RPC on stdin/stdout) over
both HTTP transports: legacy HTTP+SSE (`GET /sse` + `POST /message`, 2024-11-05) and
Streamable HTTP (`/mcp`, 2025-03-26 and later), plus `/health` and `/status`.

Why: a stdio server is written for one client. Sharing one child between users
leaks one user's responses, log level, subscriptions and notifications to the
others (Supergateway's SSE mode writes every output line to every session). So
every MCP session gets its own child, and sessions are capped per client key and
in total, so one client cannot exhaust the host.

How to run (systemd, socket-activated on fd 3, or on an explicit address):
    /usr/bin/python3 mcp_edge_gateway.py --config /etc/mcp-edge/servers/NAME.json
    python3 mcp_edge_gateway.py --config demo.json --listen 127.0.0.1:8080
    python3 mcp_edge_gateway.py --config demo.json --listen unix:/run/demo.sock
Needs Python 3.11+ and aiohttp 3.8+ (Debian's python3-aiohttp), nothing else.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

log = logging.getLogger("mcp-edge-gateway")

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BASE_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*")
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
               "X-Accel-Buffering": "no"}
KILL_GRACE = 3.0     # seconds between SIGTERM and SIGKILL of a child
BACKLOG = 100        # server messages kept per session until a GET stream opens
MAX_IN_FLIGHT = 256  # requests awaiting an answer, per session
SWEEP_EVERY = 10.0   # seconds between sweeps for idle sessions
# The child raises its own OOM score (so under MemoryMax the kernel kills a child,
# never the gateway), then execs the server; "$@" passes argv on untouched.
OOM_SHIM = ["/bin/sh", "-c", '{ echo 1000 >/proc/self/oom_score_adj; } 2>/dev/null; exec "$@"', "mcp-server"]


def compact(message: Any) -> bytes:
    """One JSON line: embedded newlines are escaped, so a message never splits in two."""
    return json.dumps(message, separators=(",", ":")).encode()


def id_key(value: Any) -> str:
    """Request ids are matched by their JSON encoding: 1 and "1" are different ids."""
    return json.dumps(value, separators=(",", ":"))


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=compact(body), status=status, headers=headers, content_type="application/json")


def rpc_error(status: int, code: int, message: str, rpc_id: Any = None,
              headers: dict[str, str] | None = None) -> web.Response:
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}
    return json_reply(body, status, headers)


def session_not_found() -> web.Response:
    return rpc_error(404, -32001, "Session not found")  # clients re-initialize on this 404


class Reply(Exception):
    """Raised by a handler to answer at once with `response` (see the middleware)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class Refused(Exception):
    """No session can be opened now: HTTP status, Retry-After seconds, JSON-RPC message."""

    def __init__(self, status: int, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.status, self.retry_after, self.message = status, retry_after, message

    def reply(self, rpc_id: Any) -> Reply:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return Reply(rpc_error(self.status, -32000, self.message, rpc_id, headers))


# --- Configuration --------------------------------------------------------------

class ConfigError(Exception):
    """The config cannot be used; the message is one line (never a secret value)."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _field(raw: dict, key: str, valid: Callable[[Any], bool], what: str, default: Any = ..., prefix: str = "") -> Any:
    if key not in raw:
        if default is ...:
            raise ConfigError(f"{prefix}{key}: missing")
        return default
    if not valid(raw[key]):
        raise ConfigError(f"{prefix}{key}: must be {what}")
    return raw[key]


def _only(raw: dict, keys: set[str], where: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"{where}unknown key {unknown[0]!r}")


@dataclass(frozen=True)
class Config:
    name: str
    command: list[str]
    environment: dict[str, str]
    working_directory: str
    base_path: str
    max_total: int
    max_per_client: int
    idle_timeout: float
    evict_min_idle: float
    keepalive_interval: float
    max_message_bytes: int
    client_header: str
    bind_sessions_to_client: bool
    log_level: str

    @classmethod
    def load(cls, path: str) -> Config:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:  # bad JSON or bad UTF-8
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: must hold a JSON object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        _only(raw, {"name", "command", "environment", "working_directory", "base_path", "sessions",
                    "keepalive_interval", "max_message_bytes", "client_header", "bind_sessions_to_client",
                    "log_level"}, "")
        text = lambda v: isinstance(v, str) and v != ""  # noqa: E731
        positive = lambda v: _number(v) and v > 0  # noqa: E731
        count = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
        env = _field(raw, "environment", lambda v: isinstance(v, dict) and all(
            isinstance(k, str) and ENV_NAME.fullmatch(k) and isinstance(x, str) for k, x in v.items()),
            "an object of NAME: string", {})
        sessions = _field(raw, "sessions", lambda v: isinstance(v, dict), "an object", {})
        _only(sessions, {"max_total", "max_per_client", "idle_timeout", "evict_min_idle"}, "sessions.")
        s = "sessions."
        config = cls(
            name=_field(raw, "name", text, "a non-empty string"),
            command=_field(raw, "command", lambda v: isinstance(v, list) and v != [] and all(map(text, v)),
                           "a non-empty list of non-empty strings"),
            environment=dict(env),
            working_directory=_field(raw, "working_directory", lambda v: text(v) and os.path.isabs(v),
                                     "an absolute path"),
            base_path=_field(raw, "base_path", lambda v: isinstance(v, str) and BASE_PATH.fullmatch(v),
                             '"" or a path like "/time" (no trailing slash)', ""),
            max_total=_field(sessions, "max_total", count, "an integer >= 1", 16, s),
            max_per_client=_field(sessions, "max_per_client", count, "an integer >= 1", 4, s),
            idle_timeout=_field(sessions, "idle_timeout", positive, "a number > 0", 1800, s),
            evict_min_idle=_field(sessions, "evict_min_idle", lambda v: _number(v) and v >= 0, "a number >= 0", 60, s),
            keepalive_interval=_field(raw, "keepalive_interval", positive, "a number > 0", 25),
            max_message_bytes=_field(raw, "max_message_bytes", lambda v: count(v) and v >= 1024,
                                     "an integer >= 1024", 8 * 1024 * 1024),
            client_header=_field(raw, "client_header", lambda v: text(v) and re.fullmatch(r"[A-Za-z0-9-]+", v),
                                 "a header name", "X-MCP-Edge-Client"),
            bind_sessions_to_client=_field(raw, "bind_sessions_to_client", lambda v: isinstance(v, bool),
                                           "true or false", False),
            log_level=_field(raw, "log_level", lambda v: v in ("debug", "info", "warning"),
                             "debug, info or warning", "info"),
        )
        if not os.path.isdir(config.working_directory):
            raise ConfigError(f"working_directory {config.working_directory}: not a directory")
        return config


# --- Streams and sessions --------------------------------------------------------

class EventStream:
    """Events waiting for one open text/event-stream response, bounded in bytes.

    Producers call send() and close() (never blocking); the handler that owns the
    response runs pump(), which writes them out and a keepalive comment on a timer.
    """

    def __init__(self, limit: int) -> None:
        self._frames: deque[bytes] = deque()
        self._size, self._limit = 0, limit
        self._wake = asyncio.Event()
        self.closed = False

    def send(self, data: bytes, event: str = "message") -> None:
        if self.closed:
            return
        frame = b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
        if self._size + len(frame) > self._limit:
            log.warning("stream closed: its client is not reading (%d bytes waiting)", self._size)
            self.close()  # a client that does not read must not grow our memory
            return
        self._frames.append(frame)
        self._size += len(frame)
        self._wake.set()

    def close(self) -> None:
        """No more events: pump() writes those still waiting, then returns."""
        self.closed = True
        self._wake.set()

    async def pump(self, response: web.StreamResponse, keepalive: float) -> None:
        next_keepalive = time.monotonic() + keepalive
        try:
            while True:
                while self._frames:
                    frame = self._frames.popleft()
                    self._size -= len(frame)
                    await response.write(frame)
                if self.closed:
                    await response.write_eof()
                    return
                wait = next_keepalive - time.monotonic()
                if wait <= 0:  # also how a vanished client is noticed: the write fails
                    await response.write(b": keepalive\n\n")
                    next_keepalive = time.monotonic() + keepalive
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.close()


class Exchange:
    """One Streamable HTTP POST holding requests: where their answers go.

    With `stream` (the client accepts SSE) answers and related server messages are
    sent as they come, and the stream closes after the last answer; without it the
    answers are collected for one JSON reply.
    """

    def __init__(self, ids: list[str], stream: EventStream | None) -> None:
        self.ids, self.waiting = ids, set(ids)
        self.answers: dict[str, bytes] = {}
        self.tokens: list[str] = []  # progress tokens of its requests
        self.stream = stream
        self.done = asyncio.Event()

    @property
    def takes_messages(self) -> bool:
        return self.stream is not None and not self.stream.closed

    def answer(self, key: str, line: bytes) -> None:
        self.waiting.discard(key)
        if self.stream is not None:
            self.stream.send(line)
        else:
            self.answers[key] = line
        if not self.waiting:
            self.done.set()
            if self.stream is not None:
                self.stream.close()

    def json_body(self, batch: bool) -> bytes:
        answers = [self.answers[k] for k in self.ids if k in self.answers]
        return b"[" + b",".join(answers) + b"]" if batch else answers[0]


def _progress_token(message: dict) -> Any:
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if token is not None else params.get("progressToken")


class Session:
    """One MCP session: its own child process and where the child's output goes."""

    def __init__(self, kind: str, client: str, config: Config, on_exit: Callable[[Session, str], None]) -> None:
        self.id = secrets.token_urlsafe(32)
        self.short = self.id[:8]  # the only part of an id that is ever logged
        self.kind, self.client, self.config = kind, client, config
        self.last_used = time.monotonic()
        self.ended = False
        self.starting = True  # not evictable before its child runs
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped: asyncio.Task | None = None
        self.pending: dict[str, Exchange | None] = {}  # request id key -> its exchange (None on legacy SSE)
        self.progress: dict[str, Exchange] = {}  # progress token key -> exchange of its request
        self.exchanges: list[Exchange] = []  # open POST exchanges, oldest first
        # Legacy SSE: the session's only stream. Streamable HTTP: the GET stream, if open.
        self.stream: EventStream | None = EventStream(self.stream_limit) if kind == "sse" else None
        self.backlog: deque[bytes] = deque(maxlen=BACKLOG)
        self._on_exit = on_exit

    @property
    def stream_limit(self) -> int:
        return 4 * self.config.max_message_bytes

    @property
    def busy(self) -> bool:
        return self.starting or bool(self.pending)

    def idle_for(self) -> float:
        return time.monotonic() - self.last_used

    def touch(self) -> None:
        self.last_used = time.monotonic()

    async def start(self) -> None:
        c = self.config
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": c.working_directory, "LANG": "C.UTF-8",
               **c.environment}  # nothing of the gateway's own environment
        self.proc = await asyncio.create_subprocess_exec(
            *OOM_SHIM, *c.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None, cwd=c.working_directory, env=env, start_new_session=True, limit=c.max_message_bytes)
        self.starting = False
        asyncio.ensure_future(self._read_output())
        log.debug("session %s: child pid %d", self.short, self.proc.pid)

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        reason = "its server exited"
        try:
            while line := await self.proc.stdout.readline():
                line = line.strip()
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    reason = "its server wrote a line that is not JSON"
                    break
                self.touch()
                for item in message if isinstance(message, list) else [message]:
                    if isinstance(item, dict):  # SSE data must be one line: no CR either
                        self.route(item, compact(item) if item is not message or b"\r" in line else line)
        except ValueError:  # the line is longer than the reader's limit
            reason = f"its server wrote a line over {self.config.max_message_bytes} bytes"
        self._on_exit(self, reason)

    def route(self, message: dict, line: bytes) -> None:
        is_answer = "method" not in message and "id" in message
        target = self.pending.pop(id_key(message["id"]), None) if is_answer else None
        if self.kind == "sse":  # one child per session: all it says is for this client
            if self.stream is not None:
                self.stream.send(line)
        elif is_answer:
            if target is None:
                log.debug("session %s: dropped an answer nobody waits for", self.short)
            else:
                target.answer(id_key(message["id"]), line)
        else:
            self._route_server_message(message, line)

    def _route_server_message(self, message: dict, line: bytes) -> None:
        """To the request it reports progress on, else the newest open POST stream,
        else the GET stream, else the backlog (delivered when a GET stream opens)."""
        token = _progress_token(message)
        target = self.progress.get(id_key(token)) if token is not None else None
        if target is None or not target.takes_messages:
            target = next((x for x in reversed(self.exchanges) if x.takes_messages), None)
        if target is not None and target.stream is not None:
            target.stream.send(line)
        elif self.stream is not None and not self.stream.closed:
            self.stream.send(line)
        else:
            self.backlog.append(line)

    def begin(self, requests: list[dict], stream: EventStream | None) -> Exchange:
        """Register a POST's requests before they reach the child (a fast answer must find them)."""
        exchange = Exchange([id_key(r["id"]) for r in requests], stream)
        for request, key in zip(requests, exchange.ids):
            self.pending[key] = exchange
            token = _progress_token(request)
            if token is not None:
                exchange.tokens.append(id_key(token))
                self.progress[id_key(token)] = exchange
        self.exchanges.append(exchange)
        return exchange

    def finish(self, exchange: Exchange) -> None:
        """The POST is over (answered, or its client left): forget what points at it."""
        for key in exchange.waiting:
            if self.pending.get(key) is exchange:
                del self.pending[key]
        for token in exchange.tokens:
            if self.progress.get(token) is exchange:
                del self.progress[token]
        if exchange in self.exchanges:
            self.exchanges.remove(exchange)
        self.touch()

    async def write(self, messages: list[Any]) -> bool:
        """Send messages to the child, one line each; False if the session is gone."""
        if self.ended or self.proc is None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(b"".join(compact(m) + b"\n" for m in messages))
            await self.proc.stdin.drain()
        except ConnectionError:
            return False
        return not self.ended

    def close_streams(self) -> None:
        """Answer what is still in flight with an error, so no client waits forever; close streams."""
        for key, exchange in list(self.pending.items()):
            if exchange is not None:
                error = b'{"jsonrpc":"2.0","id":' + key.encode() + b',"error":{"code":-32000,"message":"Session ended"}}'
                exchange.answer(key, error)
        self.pending.clear()
        for exchange in self.exchanges:
            exchange.done.set()
            if exchange.stream is not None:
                exchange.stream.close()
        if self.stream is not None:
            self.stream.close()

    async def stop(self) -> None:
        """End the child: close stdin, SIGTERM its process group, SIGKILL after KILL_GRACE, reap."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        _killpg(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), KILL_GRACE)
        except asyncio.TimeoutError:
            _killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class SessionPool:
    """All sessions, their caps (per client key and in total) and the counters of /status."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.counters = dict.fromkeys(("opened", "closed", "evicted", "refused", "expired"), 0)
        self._stopping: set[asyncio.Task] = set()

    def find(self, session_id: str | None, client: str, kind: str) -> Session | None:
        if session_id is None or not SESSION_ID.fullmatch(session_id):
            return None
        session = self.sessions.get(session_id)
        if session is None or session.kind != kind:
            return None
        if self.config.bind_sessions_to_client and session.client != client:
            return None  # the same answer as for an unknown id: never reveal that it exists
        if session.idle_for() > self.config.idle_timeout:
            self.end(session, "idle timeout", "expired")
            return None
        return session

    async def open(self, kind: str, client: str) -> Session:
        """A new session with its child running, after making room; raises Refused."""
        self.expire_idle()
        victims = []
        c = self.config
        mine = [s for s in self.sessions.values() if s.client == client]
        if len(mine) >= c.max_per_client:
            victim = _least_recently_used(s for s in mine if not s.busy)
            if victim is None:
                raise self._refuse(client, Refused(429, 5, "Too many sessions for this client"))
            victims.append(self.end(victim, "its client is at max_per_client", "evicted"))
        if len(self.sessions) >= c.max_total:
            victim = _least_recently_used(s for s in self.sessions.values()
                                          if not s.busy and s.idle_for() >= c.evict_min_idle)
            if victim is None:
                raise self._refuse(client, Refused(503, 10, "Server busy: too many sessions"))
            victims.append(self.end(victim, "the gateway is at max_total", "evicted"))
        session = Session(kind, client, c, lambda s, reason: self.end(s, reason))
        self.sessions[session.id] = session
        self.counters["opened"] += 1
        if victims:  # their children are gone before a new one starts: the cap holds for processes too
            await asyncio.wait(victims)
        try:
            await session.start()
        except OSError as e:
            self.end(session, f"its server failed to start: {e.strerror}")
            raise Refused(502, 0, "MCP server failed to start") from None
        if session.ended:  # evicted or stopped while starting
            await session.stop()
            raise Refused(503, 10, "Server busy: too many sessions")
        log.info("session %s opened (%s, client %s, %d open)", session.short, kind, client, len(self.sessions))
        return session

    def _refuse(self, client: str, refusal: Refused) -> Refused:
        self.counters["refused"] += 1
        log.warning("new session refused (client %s): %d %s", client, refusal.status, refusal.message)
        return refusal

    def end(self, session: Session, reason: str, counter: str | None = None) -> asyncio.Task:
        """End a session now (it answers 404 from here on); its child is stopped in the background."""
        if session.stopped is not None:
            return session.stopped
        session.ended = True
        self.sessions.pop(session.id, None)
        self.counters["closed"] += 1
        if counter is not None:
            self.counters[counter] += 1
        log.info("session %s %s (client %s): %s", session.short, counter or "closed", session.client, reason)
        session.close_streams()
        session.stopped = task = asyncio.ensure_future(session.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    def expire_idle(self) -> None:
        for session in list(self.sessions.values()):
            if session.idle_for() > self.config.idle_timeout:
                self.end(session, "idle timeout", "expired")

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, self.config.idle_timeout))
            self.expire_idle()

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            self.end(session, "the gateway is stopping")
        if self._stopping:
            await asyncio.wait(set(self._stopping), timeout=KILL_GRACE + 1)

    def status(self) -> dict:
        kinds = [s.kind for s in self.sessions.values()]
        c = self.config
        return {"sessions": {"total": len(kinds), "sse": kinds.count("sse"),
                             "streamable_http": kinds.count("streamable_http"),
                             "clients": len({s.client for s in self.sessions.values()})},
                "limits": {"max_total": c.max_total, "max_per_client": c.max_per_client,
                           "idle_timeout": c.idle_timeout, "evict_min_idle": c.evict_min_idle,
                           "max_message_bytes": c.max_message_bytes},
                "counters": dict(self.counters)}


def _least_recently_used(sessions: Any) -> Session | None:
    return min(sessions, key=lambda s: s.last_used, default=None)


# --- HTTP routes -------------------------------------------------------------------

async def _start_event_stream(request: web.Request, headers: dict[str, str] | None = None) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
    await response.prepare(request)
    return response


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "mcp-edge-gateway"  # never aiohttp's name and version


@web.middleware
async def _replies(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except Reply as r:
        return r.response


def _is_request(message: dict) -> bool:
    return "method" in message and message.get("id") is not None


class Gateway:
    """The HTTP side: routes for both transports, /health and /status."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool = SessionPool(config)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_message_bytes, middlewares=[_replies])
        base = self.config.base_path
        app.router.add_route("GET", base + "/sse", self.sse_open)
        app.router.add_route("POST", base + "/message", self.sse_message)
        app.router.add_route("*", base + "/mcp", self.mcp)
        app.router.add_route("GET", base + "/health", self.health)
        app.router.add_route("GET", base + "/status", self.status)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.on_response_prepare.append(_server_header)
        return app

    def client_key(self, request: web.Request) -> str:
        return request.headers.get(self.config.client_header, "").strip()[:256] or "unknown"

    async def read_message(self, request: web.Request) -> Any:
        limit = self.config.max_message_bytes
        too_large = Reply(rpc_error(413, -32600, f"Message larger than {limit} bytes"))
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        try:
            return json.loads(body)
        except ValueError:
            raise Reply(rpc_error(400, -32700, "Parse error: the body is not JSON")) from None

    async def pump(self, request: web.Request, stream: EventStream,
                   headers: dict[str, str] | None = None) -> web.StreamResponse:
        response = await _start_event_stream(request, headers)
        await stream.pump(response, self.config.keepalive_interval)
        return response

    # Legacy HTTP+SSE (2024-11-05): the session lives as long as its GET stream.

    async def sse_open(self, request: web.Request) -> web.StreamResponse:
        try:
            session = await self.pool.open("sse", self.client_key(request))
        except Refused as r:
            raise r.reply(None) from None
        assert session.stream is not None
        session.stream.send(f"{self.config.base_path}/message?sessionId={session.id}".encode(), "endpoint")
        try:
            return await self.pump(request, session.stream)
        finally:
            self.pool.end(session, "its stream closed")

    async def sse_message(self, request: web.Request) -> web.StreamResponse:
        session_id = request.query.get("sessionId")
        if not session_id:
            raise Reply(rpc_error(400, -32600, "Missing sessionId"))
        session = self.pool.find(session_id, self.client_key(request), "sse")
        if session is None:
            raise Reply(session_not_found())
        message = await self.read_message(request)
        requests = [m for m in (message if isinstance(message, list) else [message])
                    if isinstance(m, dict) and _is_request(m)]
        if len(session.pending) + len(requests) > MAX_IN_FLIGHT:
            raise Reply(rpc_error(429, -32000, "Too many requests in flight", headers={"Retry-After": "5"}))
        for r in requests:  # only to know the session is busy (not evictable)
            session.pending[id_key(r["id"])] = None
        session.touch()
        if not await session.write([message]):  # one line, however the body was laid out
            raise Reply(session_not_found())
        return web.Response(status=202, text="Accepted")

    # Streamable HTTP (2025-03-26 .. 2025-11-25) on {base}/mcp.

    async def mcp(self, request: web.Request) -> web.StreamResponse:
        session_id = request.headers.get("Mcp-Session-Id")
        if request.method == "POST":
            return await self.mcp_post(request, session_id)
        if request.method not in ("GET", "DELETE"):
            raise Reply(rpc_error(405, -32600, "Method not allowed", headers={"Allow": "GET, POST, DELETE"}))
        if session_id is None:
            # GET/DELETE without a session: 405 with `Allow: POST`, as a 2026-07-28 server
            # answers. No SDK client sends them: 1.x and 2.x open the GET stream and send
            # DELETE only once they hold a session id, and treat 405 as "not offered".
            # An SSE-first client probing with GET learns this is no legacy SSE endpoint
            # (that is {base}/sse) and moves on to POST. 400 would read as a broken request.
            raise Reply(rpc_error(405, -32600, "Method not allowed without a session", headers={"Allow": "POST"}))
        session = self.pool.find(session_id, self.client_key(request), "streamable_http")
        if session is None:
            raise Reply(session_not_found())
        if request.method == "DELETE":
            self.pool.end(session, "deleted by its client")
            return web.Response(status=200)
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise Reply(rpc_error(406, -32600, "Accept must include text/event-stream"))
        if session.stream is not None:
            session.stream.close()  # a reconnecting client replaces its old stream, never a 409
        session.stream = stream = EventStream(session.stream_limit)
        session.touch()
        while session.backlog:
            stream.send(session.backlog.popleft())
        try:
            return await self.pump(request, stream)
        finally:
            if session.stream is stream:
                session.stream = None

    def answer_mode(self, request: web.Request, rpc_id: Any) -> str:
        accept = request.headers.get("Accept", "")
        if "text/event-stream" in accept:
            return "sse"
        if "application/json" in accept or "*/*" in accept:
            return "json"
        raise Reply(rpc_error(406, -32600, "Accept must include application/json or text/event-stream", rpc_id))

    async def mcp_post(self, request: web.Request, session_id: str | None) -> web.StreamResponse:
        body = await self.read_message(request)
        messages = body if isinstance(body, list) else [body]
        if not messages or not all(isinstance(m, dict) for m in messages):
            raise Reply(rpc_error(400, -32600, "Invalid Request: expected a JSON-RPC object or batch"))
        requests = [m for m in messages if _is_request(m)]
        first_id = requests[0]["id"] if requests else None
        headers = {}
        if session_id is None:
            if not (len(messages) == 1 and requests and requests[0]["method"] == "initialize"):
                # A sessionless request that is not initialize (e.g. SDK 2.x's probe
                # `server/discover` at protocol 2026-07-28) is a JSON-RPC error *with the
                # request's id* at HTTP 400. SDK 2.3.0 (mode="auto") turns any JSON-RPC error
                # other than -32022 (unsupported protocol version) into "legacy server" and
                # falls back to initialize at once; -32022 with a modern-only `supported`
                # list would make it give up, and no answer at all would cost it 10 s.
                raise Reply(rpc_error(400, -32600, "Bad Request: no Mcp-Session-Id; initialize first", first_id))
            mode = self.answer_mode(request, first_id)  # before spawning anything
            try:
                session = await self.pool.open("streamable_http", self.client_key(request))
            except Refused as r:
                raise r.reply(first_id) from None
            headers["Mcp-Session-Id"] = session.id
        else:
            found = self.pool.find(session_id, self.client_key(request), "streamable_http")
            if found is None:
                raise Reply(session_not_found())
            session = found
        if not requests:  # notifications and answers to the server's requests only
            session.touch()
            if not await session.write(messages):
                raise Reply(session_not_found())
            return web.Response(status=202)
        mode = self.answer_mode(request, first_id)
        self.check_ids(session, requests)
        exchange = session.begin(requests, EventStream(session.stream_limit) if mode == "sse" else None)
        try:
            session.touch()
            if not await session.write(messages):
                raise Reply(session_not_found())
            if exchange.stream is not None:
                return await self.pump(request, exchange.stream, headers)
            await self.wait_answers(request, exchange)
            if not exchange.answers:
                raise Reply(session_not_found())
            return web.Response(body=exchange.json_body(isinstance(body, list)), headers=headers,
                                content_type="application/json")
        finally:
            session.finish(exchange)

    @staticmethod
    def check_ids(session: Session, requests: list[dict]) -> None:
        keys = [id_key(r["id"]) for r in requests]
        if len(set(keys)) != len(keys) or any(k in session.pending for k in keys):
            raise Reply(rpc_error(400, -32600, "Request id already in flight in this session", requests[0]["id"]))
        if len(session.pending) + len(keys) > MAX_IN_FLIGHT:
            raise Reply(rpc_error(429, -32000, "Too many requests in flight", requests[0]["id"],
                                  {"Retry-After": "5"}))

    async def wait_answers(self, request: web.Request, exchange: Exchange) -> None:
        """Wait for a JSON reply's answers; stop early if the client is gone."""
        while not exchange.done.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(exchange.done.wait(), self.config.keepalive_interval)
            if request.transport is None or request.transport.is_closing():
                raise Reply(web.Response(status=499))

    # Operators' endpoints (nginx routes /health only) and everything else.

    async def health(self, request: web.Request) -> web.Response:
        return json_reply({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        self.pool.expire_idle()
        return json_reply(self.pool.status())

    async def not_found(self, request: web.Request) -> web.Response:
        return json_reply({"error": "not_found"}, 404)


# --- Startup -------------------------------------------------------------------------

def systemd_socket() -> socket.socket | None:
    """The socket systemd passed on fd 3 (LISTEN_PID/LISTEN_FDS), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0") or 0) < 1:
        return None
    return socket.socket(fileno=3)


def make_site(runner: web.AppRunner, listen: str | None) -> tuple[web.BaseSite, str]:
    sock = systemd_socket()
    if sock is not None:
        return web.SockSite(runner, sock), "the socket from systemd"
    if listen is None:
        raise ConfigError("no socket from systemd and no --listen")
    if listen.startswith("unix:"):
        return web.UnixSite(runner, listen[5:]), listen
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: expected unix:/path or HOST:PORT")
    return web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True), listen


async def serve(config: Config, listen: str | None) -> None:
    gateway = Gateway(config)
    runner = web.AppRunner(gateway.make_app(), access_log=None)  # the access log would show session ids
    await runner.setup()
    site, where = make_site(runner, listen)
    await site.start()
    for server in getattr(site, "_server", None) and site._server.sockets or []:  # the real port, for --listen :0
        name = server.getsockname()
        where = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else where
    log.info("listening on %s (%s)", where, " ".join(config.command[:1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = asyncio.ensure_future(gateway.pool.sweep())
    await stop.wait()
    log.info("stopping: ending %d sessions", len(gateway.pool.sessions))
    sweeper.cancel()
    await gateway.pool.close_all()  # ends every stream too, so the cleanup below is quick
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(runner.cleanup(), 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the server's JSON config")
    parser.add_argument("--listen", help="unix:/path or HOST:PORT, when systemd passes no socket")
    args = parser.parse_args(argv)
    try:
        config = Config.load(args.config)
    except ConfigError as e:
        print(f"mcp-edge-gateway: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"mcp-edge-gateway[{config.name}]: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    log.setLevel(config.log_level.upper())
    try:
        asyncio.run(serve(config, args.listen))
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except OSError as e:
        log.error("cannot listen: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
