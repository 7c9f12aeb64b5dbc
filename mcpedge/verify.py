"""Prove an MCP endpoint works the way an MCP client uses it.

Protocol steps use the official MCP Python SDK; the timing checks read the raw
event stream with httpx so nothing hides what the proxy does to it.

    python -m mcpedge.verify https://mcp.example.com [--ca-file ca.pem]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

PROTOCOL_VERSION = "2025-06-18"


class VerifyError(RuntimeError):
    """A check failed; the message names the check and the likely cause."""


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def client_factory(ca_file: str | None, http2: bool = False):
    """An httpx client factory for the SDK transports, trusting ``ca_file``."""
    ctx = ssl_context(ca_file)

    def factory(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=headers, timeout=timeout or httpx.Timeout(30, read=300), auth=auth,
                                 verify=ctx, http2=http2, follow_redirects=True)

    return factory


async def _session_checks(session: ClientSession) -> dict:
    init = await session.initialize()
    tools = await session.list_tools()
    names = sorted(t.name for t in tools.tools)
    result = {"server": init.serverInfo.name, "tools": names}
    if "echo" in names:
        res = await session.call_tool("echo", {"text": "mcp-edge"})
        result["echo"] = res.content[0].text if res.content else None
    return result


async def check_sse(base_url: str, ca_file: str | None = None, timeout: float = 10) -> dict:
    """Legacy HTTP+SSE through the proxy: initialize, list tools, call a tool."""
    async with sse_client(urljoin(base_url, "/sse"), timeout=timeout,
                          httpx_client_factory=client_factory(ca_file)) as (read, write):
        async with ClientSession(read, write) as session:
            return await asyncio.wait_for(_session_checks(session), timeout * 3)


async def check_streamable(base_url: str, ca_file: str | None = None, timeout: float = 10) -> dict:
    """Streamable HTTP through the proxy: initialize, list tools, call a tool."""
    async with streamablehttp_client(urljoin(base_url, "/mcp"), timeout=timeout,
                                     httpx_client_factory=client_factory(ca_file)) as (read, write, session_id):
        async with ClientSession(read, write) as session:
            result = await asyncio.wait_for(_session_checks(session), timeout * 3)
            result["session_id"] = session_id()
            return result


# --- Raw SSE (what the proxy does to events) -----------------------------------

@dataclass
class SseEvent:
    event: str
    data: str
    received: float  # time.time() when the event's last line arrived

    def json(self):
        return json.loads(self.data)


@dataclass
class SseStream:
    """A legacy SSE session read line by line: GET /sse, POST to its endpoint."""

    client: httpx.Client
    base_url: str
    response: httpx.Response | None = None
    endpoint: str | None = None
    _lines: object = None
    _next_id: int = 0
    headers: dict = field(default_factory=dict)

    def open(self, timeout: float = 5) -> "SseStream":
        req = self.client.build_request("GET", urljoin(self.base_url, "/sse"),
                                        headers={"Accept": "text/event-stream", **self.headers})
        self.response = self.client.send(req, stream=True)
        if self.response.status_code != 200:
            raise VerifyError(f"GET /sse answered {self.response.status_code}")
        self._lines = self.response.iter_lines()
        first = self.next_event()
        if first.event != "endpoint":
            raise VerifyError(f"the first SSE event was {first.event!r}, not 'endpoint'")
        self.endpoint = urljoin(self.base_url, first.data.strip())
        return self

    def next_event(self) -> SseEvent:
        event, data = "message", []
        for line in self._lines:
            if line == "":
                if data:
                    return SseEvent(event, "\n".join(data), time.time())
                event = "message"
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                event = value
            elif key == "data":
                data.append(value)
        raise VerifyError("the SSE stream ended")

    def post(self, method: str, params: dict | None = None, notification: bool = False) -> int | None:
        msg = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        msg_id = None
        if not notification:
            self._next_id += 1
            msg_id = msg["id"] = self._next_id
        r = self.client.post(self.endpoint, json=msg, headers=self.headers)
        if r.status_code not in (200, 202):
            raise VerifyError(f"POST {method} answered {r.status_code}: {r.text[:200]}")
        return msg_id

    def wait_result(self, msg_id: int, on_event=None) -> dict:
        while True:
            ev = self.next_event()
            msg = ev.json()
            if msg.get("id") == msg_id and ("result" in msg or "error" in msg):
                return msg
            if on_event:
                on_event(ev, msg)

    def initialize(self) -> dict:
        res = self.wait_result(self.post("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcp-edge-verify", "version": "1"}}))
        self.post("notifications/initialized", notification=True)
        return res

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


def sync_client(ca_file: str | None, http2: bool = False, gzip: bool = True, timeout: float = 30,
                read_timeout: float | None = None) -> httpx.Client:
    """An httpx client for raw event streams; ``read_timeout=None`` waits forever
    between two reads (idle streams), a number turns held events into an error."""
    headers = {"Accept-Encoding": "gzip"} if gzip else {"Accept-Encoding": "identity"}
    return httpx.Client(verify=ssl_context(ca_file), http2=http2, headers=headers,
                        timeout=httpx.Timeout(timeout, read=read_timeout))


def event_delays(base_url: str, ca_file: str | None, count: int = 10, interval_ms: int = 200,
                 http2: bool = False, timeout: float = 30) -> dict:
    """Ask the server's ``ticks`` tool for timestamped events; measure arrival delay.

    Returns ``{"http_version", "delays_ms": [...], "content_encoding"}``. Events
    held longer than ``timeout`` seconds raise httpx.ReadTimeout.
    """
    with sync_client(ca_file, http2=http2, timeout=timeout, read_timeout=timeout) as client:
        stream = SseStream(client, base_url).open()
        try:
            stream.initialize()
            delays = []

            def on_event(ev, msg):
                if msg.get("method") == "notifications/message":
                    data = msg["params"]["data"]
                    if isinstance(data, dict) and "sent_at_ms" in data:
                        delays.append(ev.received * 1000 - data["sent_at_ms"])

            msg_id = stream.post("tools/call", {"name": "ticks", "arguments": {"count": count, "interval_ms": interval_ms}})
            stream.wait_result(msg_id, on_event)
            return {"http_version": stream.response.http_version, "delays_ms": delays,
                    "content_encoding": stream.response.headers.get("content-encoding")}
        finally:
            stream.close()


def verify(base_url: str, ca_file: str | None = None) -> list[str]:
    """The post-deploy checks; returns one line per passed check, raises VerifyError."""
    lines = []
    try:
        r = httpx.get(urljoin(base_url, "/health"), verify=ssl_context(ca_file), timeout=10)
    except httpx.ConnectError as exc:
        raise VerifyError(f"health: cannot connect to {base_url}: {exc} (certificate, DNS or nginx down)") from exc
    if r.status_code != 200:
        raise VerifyError(f"health: /health answered {r.status_code} (upstream down?)")
    lines.append("health: 200")
    for name, check in (("sse", check_sse), ("streamable-http", check_streamable)):
        try:
            res = asyncio.run(check(base_url, ca_file))
        except Exception as exc:  # noqa: BLE001 - report which check failed and why
            raise VerifyError(f"{name}: {type(exc).__name__}: {exc}") from exc
        lines.append(f"{name}: initialize + tools/list ok ({len(res['tools'])} tools)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--ca-file")
    args = p.parse_args(argv)
    try:
        for line in verify(args.url, args.ca_file):
            print(f"ok  {line}")
    except VerifyError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
