"""A session (its own child process, where the child's output goes) and the pool that caps them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .config import Config
from .protocol import (
    BACKLOG,
    GONE_CHECK,
    KILL_GRACE,
    OOM_SHIM,
    SESSION_ID,
    SWEEP_EVERY,
    Refused,
    client_gone,
    compact,
    id_key,
    log,
)


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
