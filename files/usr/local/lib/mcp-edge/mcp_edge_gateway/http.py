"""The HTTP side: legacy HTTP+SSE, Streamable HTTP, /health and /status."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .config import Config
from .protocol import (
    GONE_CHECK,
    MAX_IN_FLIGHT,
    SSE_HEADERS,
    Refused,
    Reply,
    client_gone,
    id_key,
    json_reply,
    rpc_error,
    session_not_found,
)
from .sessions import EventStream, Session, SessionPool


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
