"""mcp-edge gateway: one stdio MCP server behind HTTP, one child process per session.

What: serves a stdio MCP server (newline-delimited JSON-RPC on stdin/stdout) over
both HTTP transports: legacy HTTP+SSE (`GET /sse` + `POST /message`, 2024-11-05) and
Streamable HTTP (`/mcp`, 2025-03-26 and later), plus `/health` and `/status`.

Why: a stdio server is written for one client. Sharing one child between users leaks
one user's responses, log level, subscriptions and notifications to the others
(Supergateway's SSE mode writes every output line to every session). So every MCP
session gets its own child, and sessions are capped per client key and in total,
so that one client cannot exhaust the host.

How to run (socket-activated by systemd on fd 3, or on an explicit address):
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("mcp-edge-gateway")

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
               "X-Accel-Buffering": "no"}
KILL_GRACE = 3.0     # seconds between SIGTERM and SIGKILL of a child
BACKLOG = 100        # server messages kept per session until a GET stream opens
MAX_IN_FLIGHT = 256  # requests awaiting an answer, per session
SWEEP_EVERY = 10.0   # seconds between sweeps for idle sessions
GONE_CHECK = 1.0     # seconds between checks that a waiting client is still connected
# The child raises its own OOM score (so under MemoryMax the kernel kills a child, never
# the gateway), then execs the server: "$@" passes its argv on untouched, no shell parsing.
OOM_SHIM = ["/bin/sh", "-c", '{ echo 1000 >/proc/self/oom_score_adj; } 2>/dev/null; unset PWD; exec "$@"',
            "mcp-server"]


def compact(message: Any) -> bytes:
    """One JSON line: newlines inside strings are escaped, so a message never splits in two."""
    return json.dumps(message, separators=(",", ":")).encode()


def id_key(value: Any) -> str:
    """Request ids are matched by their JSON encoding: 1 and "1" are different ids."""
    return json.dumps(value, separators=(",", ":"))


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=compact(body), status=status, headers=headers, content_type="application/json")


def rpc_error(status: int, code: int, message: str, rpc_id: Any = None,
              headers: dict[str, str] | None = None) -> web.Response:
    return json_reply({"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}, status, headers)


def session_not_found() -> web.Response:
    return rpc_error(404, -32001, "Session not found")  # clients re-initialize on this 404


def client_gone(request: web.Request) -> bool:
    # aiohttp does not cancel a handler whose client left (3.8 never, 3.9+ by default): look.
    return request.transport is None or request.transport.is_closing()


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


# --- Configuration ------------------------------------------------------------------

class ConfigError(Exception):
    """The config cannot be used; the message is one line and never holds a value from it."""


def _text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _env_entry(name: Any, value: Any) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and isinstance(value, str) and "\0" not in value


def read_env_file(path: str) -> dict[str, str]:
    """The deploy's env file (mode 0600, may hold secrets): NAME=<JSON string> lines, # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"env_file {path}: cannot read it: {e.strerror}") from None
    except ValueError:
        raise ConfigError(f"env_file {path}: not UTF-8") from None
    environment = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        try:
            value = json.loads(value)
        except ValueError:
            value = None
        if not _env_entry(name, value):  # the message never shows the value
            raise ConfigError(f"env_file {path}, line {number}: expected NAME=<JSON string>")
        environment[name] = value
    return environment


REQUIRED = object()
# Config attribute: (key in the JSON file, check, what the value must be, default).
FIELDS: dict[str, tuple[str, Callable[[Any], bool], str, Any]] = {
    "name": ("name", _text, "a non-empty string", REQUIRED),
    "command": ("command", lambda v: isinstance(v, list) and v != [] and all(map(_text, v)),
                "a non-empty list of non-empty strings", REQUIRED),
    "environment": ("environment", lambda v: isinstance(v, dict) and all(_env_entry(k, x) for k, x in v.items()),
                    "an object of NAME: string", {}),
    "env_file": ("env_file", lambda v: _text(v) and os.path.isabs(v), "an absolute path", ""),
    "working_directory": ("working_directory", lambda v: _text(v) and os.path.isabs(v), "an absolute path", REQUIRED),
    "base_path": ("base_path", lambda v: isinstance(v, str) and re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", v),
                  '"" or a path like "/time" (no trailing slash)', ""),
    "max_total": ("sessions.max_total", _count, "an integer >= 1", 16),
    "max_per_client": ("sessions.max_per_client", _count, "an integer >= 1", 4),
    "idle_timeout": ("sessions.idle_timeout", lambda v: _number(v) and v > 0, "a number > 0", 1800),
    "evict_min_idle": ("sessions.evict_min_idle", lambda v: _number(v) and v >= 0, "a number >= 0", 60),
    "keepalive_interval": ("keepalive_interval", lambda v: _number(v) and v > 0, "a number > 0", 25),
    "max_message_bytes": ("max_message_bytes", lambda v: _count(v) and v >= 1024, "an integer >= 1024", 8 << 20),
    "client_header": ("client_header", lambda v: _text(v) and re.fullmatch(r"[A-Za-z0-9-]+", v),
                      "a header name", "X-MCP-Edge-Client"),
    "bind_sessions_to_client": ("bind_sessions_to_client", lambda v: isinstance(v, bool), "true or false", False),
    "log_level": ("log_level", lambda v: v in ("debug", "info", "warning"), "debug, info or warning", "info"),
}


@dataclass(frozen=True)
class Config:
    name: str
    command: list[str]
    environment: dict[str, str]  # the env_file's entries, then the config's own
    env_file: str
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
        if not isinstance(raw, dict) or not isinstance(raw.get("sessions", {}), dict):
            raise ConfigError(f"{path}: must be a JSON object, its sessions an object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        flat = {k: v for k, v in raw.items() if k != "sessions"}
        flat.update({f"sessions.{k}": v for k, v in raw.get("sessions", {}).items()})
        known = {key for key, *_ in FIELDS.values()}
        for key in flat:
            if key not in known:
                raise ConfigError(f"unknown key {key!r}")
        values = {}
        for attr, (key, valid, what, default) in FIELDS.items():
            if key not in flat and default is REQUIRED:
                raise ConfigError(f"{key}: missing")
            if key in flat and not valid(flat[key]):
                raise ConfigError(f"{key}: must be {what}")
            values[attr] = flat.get(key, default)
        if values["env_file"]:
            values["environment"] = {**read_env_file(values["env_file"]), **values["environment"]}
        config = cls(**values)
        if not os.path.isdir(config.working_directory):
            raise ConfigError(f"working_directory {config.working_directory}: not a directory")
        return config


# --- Streams and sessions ------------------------------------------------------------

class EventStream:
    """Events waiting for one open text/event-stream response, bounded in bytes.

    Producers call send() and close(), which never block; the handler that owns the
    response runs pump(), which writes the events out and a keepalive on a timer.
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
        if self._size + len(frame) > self._limit:  # a client that does not read must not grow our memory
            log.warning("stream closed: its client is not reading (%d bytes waiting)", self._size)
            self.close()
            return
        self._frames.append(frame)
        self._size += len(frame)
        self._wake.set()

    def close(self) -> None:
        """No more events: pump() writes those still waiting, then ends the response."""
        self.closed = True
        self._wake.set()

    async def pump(self, request: web.Request, response: web.StreamResponse, keepalive: float) -> None:
        next_keepalive = time.monotonic() + keepalive
        try:
            while not client_gone(request):
                while self._frames:
                    frame = self._frames.popleft()
                    self._size -= len(frame)
                    await response.write(frame)  # aiohttp hands each write to the socket at once
                if self.closed:
                    await response.write_eof()
                    return
                now = time.monotonic()
                if now >= next_keepalive:
                    await response.write(b": keepalive\n\n")
                    next_keepalive = now + keepalive
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(next_keepalive - now, GONE_CHECK))
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.close()


class Exchange:
    """One Streamable HTTP POST holding requests: where their answers go.

    With a stream (the client accepts SSE) answers and related server messages are sent
    as they come, and the stream ends after the last answer; without one the answers are
    collected for a single JSON reply.
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
            self.end()

    def end(self) -> None:
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
    """One MCP session: its own child process, and where the child's output goes."""

    def __init__(self, kind: str, client: str, config: Config, on_exit: Callable[[Session, str], Any]) -> None:
        self.id = secrets.token_urlsafe(32)
        self.short = self.id[:8]  # the only part of an id that is ever logged
        self.kind, self.client, self.config = kind, client, config
        self.limit = 4 * config.max_message_bytes  # per stream
        self.last_used = time.monotonic()
        self.starting, self.ended = True, False  # not evictable before its child runs
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped: asyncio.Task | None = None
        self.pending: dict[str, Exchange | None] = {}  # request id key -> its exchange (None: legacy SSE)
        self.progress: dict[str, Exchange] = {}  # progress token key -> exchange of its request
        self.exchanges: list[Exchange] = []  # open POST exchanges, oldest first
        # Legacy SSE: the session's one stream. Streamable HTTP: the GET stream, while open.
        self.stream: EventStream | None = EventStream(self.limit) if kind == "sse" else None
        self.backlog: deque[bytes] = deque(maxlen=BACKLOG)
        self._on_exit = on_exit
        self._reader: asyncio.Task | None = None

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
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *OOM_SHIM, *c.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=None, cwd=c.working_directory, env=env, start_new_session=True, limit=c.max_message_bytes)
        finally:
            self.starting = False
        log.debug("session %s: child pid %d", self.short, self.proc.pid)
        if self.ended:  # the gateway began stopping meanwhile: leave no child behind
            await self.stop()
        else:
            self._reader = asyncio.ensure_future(self._read_output())

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
                except (ValueError, RecursionError):
                    reason = "its server wrote a line that is not JSON"
                    break
                self.touch()
                for item in message if isinstance(message, list) else [message]:
                    if isinstance(item, dict):  # SSE data must be one line: no CR in it either
                        self.route(item, compact(item) if item is not message or b"\r" in line else line)
            else:  # end of output: say how it exited, if it does so at once (127: command not found)
                with contextlib.suppress(TimeoutError):
                    reason += f" (exit status {await asyncio.wait_for(self.proc.wait(), 0.5)})"
        except ValueError:  # longer than the reader's limit
            reason = f"its server wrote a line over {self.config.max_message_bytes} bytes"
        self._on_exit(self, reason)

    def route(self, message: dict, line: bytes) -> None:
        is_answer = "method" not in message and "id" in message
        target = self.pending.pop(id_key(message["id"]), None) if is_answer else None
        if self.kind == "sse":  # one child per session: everything it says is for this client
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
        else the GET stream, else the backlog (sent when a GET stream opens)."""
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
        self.touch()
        try:
            self.proc.stdin.write(b"".join(compact(m) + b"\n" for m in messages))
            await self.proc.stdin.drain()
        except ConnectionError:
            return False
        return not self.ended

    def close_streams(self) -> None:
        """Answer what is still in flight with an error (no client waits forever); close streams."""
        for key, exchange in list(self.pending.items()):
            if exchange is not None:
                exchange.answer(key, b'{"jsonrpc":"2.0","id":%s,"error":{"code":-32000,"message":"Session ended"}}'
                                % key.encode())
        self.pending.clear()
        for exchange in self.exchanges:
            exchange.end()
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
        except TimeoutError:
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
        c, victims = self.config, []
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
        session = Session(kind, client, c, self.end)
        self.sessions[session.id] = session  # counted from now on: the caps hold while it starts
        self.counters["opened"] += 1
        if victims:  # their children are gone before a new one starts: the caps hold for processes too
            await asyncio.wait(victims)
        try:
            await session.start()
        except OSError as e:
            self.end(session, f"its server failed to start: {e.strerror}")
            raise Refused(502, 0, "MCP server failed to start") from None
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
        self.counters["closed"] += 1  # every end; evicted and expired count them again
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
        sessions, c = list(self.sessions.values()), self.config
        kinds = [s.kind for s in sessions]
        return {"sessions": {"total": len(sessions), "sse": kinds.count("sse"),
                             "streamable_http": kinds.count("streamable_http"),
                             "clients": len({s.client for s in sessions})},
                "limits": {"max_total": c.max_total, "max_per_client": c.max_per_client,
                           "idle_timeout": c.idle_timeout, "evict_min_idle": c.evict_min_idle},
                "counters": dict(self.counters)}


def _least_recently_used(sessions: Any) -> Session | None:
    return min(sessions, key=lambda s: s.last_used, default=None)


# --- HTTP routes --------------------------------------------------------------------------

@web.middleware
async def _replies(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except Reply as r:
        return r.response


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "mcp-edge-gateway"  # never aiohttp's name and version


def _is_request(message: Any) -> bool:
    return isinstance(message, dict) and "method" in message and message.get("id") is not None


class Gateway:
    """The HTTP side: both transports, /health and /status."""

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
        except (ValueError, RecursionError):
            raise Reply(rpc_error(400, -32700, "Parse error: the body is not JSON")) from None

    async def stream_response(self, request: web.Request, stream: EventStream,
                              headers: dict[str, str] | None = None) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
        await response.prepare(request)
        await stream.pump(request, response, self.config.keepalive_interval)
        return response

    # Legacy HTTP+SSE (2024-11-05): a session lives as long as its GET stream.

    async def sse_open(self, request: web.Request) -> web.StreamResponse:
        try:
            session = await self.pool.open("sse", self.client_key(request))
        except Refused as r:
            raise r.reply(None) from None
        assert session.stream is not None
        session.stream.send(f"{self.config.base_path}/message?sessionId={session.id}".encode(), "endpoint")
        try:
            return await self.stream_response(request, session.stream)
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
        requests = [m for m in (message if isinstance(message, list) else [message]) if _is_request(m)]
        if len(session.pending) + len(requests) > MAX_IN_FLIGHT:
            raise Reply(rpc_error(429, -32000, "Too many requests in flight", headers={"Retry-After": "5"}))
        for r in requests:  # only to know that the session is busy (not evictable)
            session.pending[id_key(r["id"])] = None
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
            # (SDK 2.x) answers. The SDK clients 1.x and 2.x never send them: they open the
            # GET stream and send DELETE only once they hold a session id, and take a 405
            # there as "not offered". An SSE-first client probing with GET learns that this
            # is no legacy SSE endpoint and goes on to POST; a 400 would look like a bug.
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
            session.stream.close()  # a reconnecting client replaces its old stream: never a 409
        session.stream = stream = EventStream(session.limit)
        session.touch()
        while session.backlog:
            stream.send(session.backlog.popleft())
        try:
            return await self.stream_response(request, stream)
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
        if session_id is not None:
            session = self.pool.find(session_id, self.client_key(request), "streamable_http")
            if session is None:
                raise Reply(session_not_found())
            headers = {}
        elif len(messages) == 1 and requests and requests[0]["method"] == "initialize":
            self.answer_mode(request, first_id)  # a 406 before anything is started
            try:
                session = await self.pool.open("streamable_http", self.client_key(request))
            except Refused as r:
                raise r.reply(first_id) from None
            headers = {"Mcp-Session-Id": session.id}
        else:
            # Sessionless and not initialize: e.g. the probe of SDK 2.x (mcp.client.Client,
            # mode="auto"): `server/discover` at MCP-Protocol-Version 2026-07-28. SDK 2.3.0
            # falls back to initialize on any JSON-RPC error (or HTTP >= 400) but -32022
            # (unsupported version) naming only modern versions, which makes it give up.
            # It needs a prompt answer (silence costs its 10 s probe timeout) and a
            # response at all (a dropped connection aborts it). So: 400, -32600, the
            # request's id, and no session or child for a probe whose answer is discarded.
            raise Reply(rpc_error(400, -32600, "Bad Request: no Mcp-Session-Id; initialize first", first_id))
        if not requests:  # notifications, and answers to the server's requests
            if not await session.write(messages):
                raise Reply(session_not_found())
            return web.Response(status=202)
        mode = self.answer_mode(request, first_id)
        self.check_ids(session, requests)
        exchange = session.begin(requests, EventStream(session.limit) if mode == "sse" else None)
        try:
            if not await session.write(messages):
                raise Reply(session_not_found())
            if exchange.stream is not None:
                return await self.stream_response(request, exchange.stream, headers)
            while not exchange.done.is_set() and not client_gone(request):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exchange.done.wait(), GONE_CHECK)
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

    # For operators (nginx routes /health only) and everything else.

    async def health(self, request: web.Request) -> web.Response:
        return json_reply({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        self.pool.expire_idle()  # never count a session that is past its idle timeout
        return json_reply(self.pool.status())

    async def not_found(self, request: web.Request) -> web.Response:
        return json_reply({"error": "not_found"}, 404)


# --- Startup ---------------------------------------------------------------------------------

def make_site(runner: web.AppRunner, listen: str | None) -> web.BaseSite:
    """The socket systemd passed on fd 3 if LISTEN_PID/LISTEN_FDS say so, else --listen."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS", "0") != "0":
        return web.SockSite(runner, socket.socket(fileno=3))
    if listen is None:
        raise ConfigError("no socket from systemd and no --listen")
    if listen.startswith("unix:"):
        return web.UnixSite(runner, listen[5:])
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: expected unix:/path or HOST:PORT")
    return web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)


async def serve(config: Config, listen: str | None) -> None:
    gateway = Gateway(config)
    runner = web.AppRunner(gateway.make_app(), access_log=None)  # the access log would show session ids
    await runner.setup()
    await make_site(runner, listen).start()
    addresses = [f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a) for a in runner.addresses]
    log.info("listening on %s", " ".join(addresses))  # the real port, for --listen 127.0.0.1:0
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    sweeper = asyncio.ensure_future(gateway.pool.sweep())
    await stop.wait()
    log.info("stopping: ending %d sessions", len(gateway.pool.sessions))
    sweeper.cancel()
    await gateway.pool.close_all()  # this ends every stream too, so the cleanup below is quick
    with contextlib.suppress(TimeoutError):
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
