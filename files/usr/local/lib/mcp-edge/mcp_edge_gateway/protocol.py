"""JSON-RPC over HTTP: replies, errors, ids, and the gateway's fixed limits."""

from __future__ import annotations

import json
import logging
import re
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
