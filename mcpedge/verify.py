"""Prove an MCP endpoint works the way an MCP client uses it.

Protocol steps use the official MCP Python SDK; the timing checks read the raw
event stream with httpx so nothing hides what the proxy does to it.

    python -m mcpedge.verify https://mcp.example.com [--ca-file ca.pem] [--cert-min-days 14]

A failure exits 1 with one line: the check, what was seen, and the likely cause.
Behind a bearer-token gate the token comes from the environment variable
MCP_EDGE_VERIFY_TOKEN (never the command line: process lists show it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

from .sse import iter_events

PROTOCOL_VERSION = "2025-06-18"
TOKEN_ENV = "MCP_EDGE_VERIFY_TOKEN"


class VerifyError(RuntimeError):
    """A check failed; the message names the check and the likely cause (``cause``: a CAUSES key)."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def auth_headers(token: str | None) -> dict:
    """The request headers that pass a bearer-token gate (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def client_factory(ca_file: str | None, http2: bool = False, extra: dict | None = None):
    """An httpx client factory for the SDK transports, trusting ``ca_file`` and
    sending ``extra`` headers (the bearer token) with every request."""
    ctx = ssl_context(ca_file)

    def factory(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={**(headers or {}), **(extra or {})},
                                 timeout=timeout or httpx.Timeout(30, read=300), auth=auth,
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


async def check_sse(base_url: str, ca_file: str | None = None, timeout: float = 10,
                    headers: dict | None = None) -> dict:
    """Legacy HTTP+SSE through the proxy: initialize, list tools, call a tool."""
    async with sse_client(urljoin(base_url, "/sse"), timeout=timeout,
                          httpx_client_factory=client_factory(ca_file, extra=headers)) as (read, write):
        async with ClientSession(read, write) as session:
            return await asyncio.wait_for(_session_checks(session), timeout * 3)


async def check_streamable(base_url: str, ca_file: str | None = None, timeout: float = 10,
                           headers: dict | None = None) -> dict:
    """Streamable HTTP through the proxy: initialize, list tools, call a tool."""
    async with streamablehttp_client(urljoin(base_url, "/mcp"), timeout=timeout,
                                     httpx_client_factory=client_factory(ca_file, extra=headers)) as (
            read, write, session_id):
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
    _events: object = None
    _next_id: int = 0
    headers: dict = field(default_factory=dict)

    def open(self, timeout: float = 5) -> "SseStream":
        req = self.client.build_request("GET", urljoin(self.base_url, "/sse"),
                                        headers={"Accept": "text/event-stream", **self.headers})
        self.response = self.client.send(req, stream=True)
        if self.response.status_code != 200:
            raise VerifyError(f"GET /sse answered {self.response.status_code}")
        self._events = iter_events(self.response.iter_lines())
        first = self.next_event()
        if first.event != "endpoint":
            raise VerifyError(f"the first SSE event was {first.event!r}, not 'endpoint'")
        self.endpoint = urljoin(self.base_url, first.data.strip())
        return self

    def next_event(self) -> SseEvent:
        for event, data in self._events:
            return SseEvent(event, data, time.time())
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
                read_timeout: float | None = None, extra: dict | None = None) -> httpx.Client:
    """An httpx client for raw event streams; ``read_timeout=None`` waits forever
    between two reads (idle streams), a number turns held events into an error.
    ``extra``: headers sent with every request (the bearer token)."""
    headers = {"Accept-Encoding": "gzip" if gzip else "identity", **(extra or {})}
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


# --- Post-deploy verification: every check names itself and the likely cause ----

CAUSES = {
    "certificate": "certificate: not valid for the hostname, not issued by a trusted CA "
                   "(a private CA needs ubuntu.verify.ca_file) or expired",
    "expiry": "certificate renewal is not working (certbot.timer, ACME server reachable, deploy hook reloads nginx)",
    "nginx": "nginx is not reachable on 443 (down, DNS or firewall)",
    "upstream": "upstream down: the MCP gateway behind nginx does not answer",
    "held": "buffering or compression on: proxy_buffering and gzip must be off for event streams "
            "(a WebSocket-style location with Upgrade/Connection headers, buffering on and "
            "gzip_types text/event-stream holds every event)",
    "gzip": "compression on: gzip is on for text/event-stream (gzip off in the MCP locations)",
    "upgrade": "Connection/Upgrade header: a WebSocket-style location (Upgrade, Connection upgrade); "
               "MCP needs proxy_http_version 1.1 and Connection \"\"",
    "timeout": "read timeout: the proxy closed the stream (proxy_read_timeout/send_timeout shorter than "
               "the stream's idle gaps) or the upstream closed it",
    "access": "an access gate refused this machine: a bearer-token gate needs the token in "
              f"{TOKEN_ENV} (the deploy passes the first of nginx.access.bearer_tokens), an IP "
              "allow-list (nginx.access.allow) must list this machine's address",
    "protocol": "the MCP server or the proxy broke the protocol (headers stripped or rewritten? "
                "Mcp-Session-Id, MCP-Protocol-Version and 4xx statuses must pass untouched)",
}


def fail(check: str, detail: str, cause: str) -> VerifyError:
    return VerifyError(f"{check}: {detail}; likely cause: {CAUSES[cause]}", cause)


def _status_cause(status: int, headers: httpx.Headers | None = None) -> str:
    if status in (502, 503, 504):
        return "upstream"
    if status in (401, 403):
        return "access"
    if status in (101, 426) or (headers is not None and ("upgrade" in headers
                                                         or "upgrade" in headers.get("connection", "").lower())):
        return "upgrade"
    return "protocol"


def _hostport(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname, parts.port or 443


def check_certificate(base_url: str, ca_file: str | None = None, min_days: int = 0, timeout: float = 10) -> str:
    """The TLS chain verifies for the hostname and is valid for at least ``min_days`` more days."""
    hostname, port = _hostport(base_url)
    try:
        with socket.create_connection((hostname, port), timeout=timeout) as raw:
            with ssl_context(ca_file).wrap_socket(raw, server_hostname=hostname) as tls:
                cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        raise fail("certificate", f"{hostname}: {exc.verify_message}", "certificate") from exc
    except (OSError, ssl.SSLError) as exc:
        raise fail("certificate", f"cannot connect to {hostname}:{port}: {exc}", "nginx") from exc
    days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
    if days < min_days:
        raise fail("certificate", f"expires in {days:.1f} days (< cert_min_days {min_days})", "expiry")
    return f"certificate: valid for {hostname}, {days:.0f} days left"


def check_health(base_url: str, ca_file: str | None = None, timeout: float = 10) -> str:
    try:  # /health is outside the access gates: no token needed
        r = httpx.get(urljoin(base_url, "/health"), verify=ssl_context(ca_file), timeout=timeout)
    except httpx.ConnectError as exc:
        raise fail("health", f"cannot connect to {base_url}: {exc}", "nginx") from exc
    except httpx.TimeoutException as exc:
        raise fail("health", f"no answer within {timeout:g} s", "upstream") from exc
    if r.status_code != 200:
        raise fail("health", f"/health answered {r.status_code}", _status_cause(r.status_code, r.headers))
    return "health: 200"


def first_event_delay(base_url: str, ca_file: str | None = None, gzip: bool = True, within: float = 1.0,
                      http2: bool = False, headers: dict | None = None
                      ) -> tuple[float | None, int | None, httpx.Headers]:
    """GET /sse: (seconds until the first event or comment arrived, or None when
    nothing came within ``within``; the status, None if even the headers were held; headers)."""
    with sync_client(ca_file, http2=http2, gzip=gzip, timeout=within + 5, read_timeout=within,
                     extra=headers) as client:
        start = time.monotonic()
        deadline = start + within
        req = client.build_request("GET", urljoin(base_url, "/sse"), headers={"Accept": "text/event-stream"})
        try:
            resp = client.send(req, stream=True)
        except httpx.TimeoutException:
            return None, None, httpx.Headers()  # a buffering proxy may hold the headers too
        try:
            if resp.status_code != 200:
                return None, resp.status_code, resp.headers
            try:  # the read timeout bounds a silent stream; the deadline a trickling one
                for line in resp.iter_lines():
                    if line.startswith(("data:", ":")) or time.monotonic() > deadline:
                        now = time.monotonic()
                        return (now - start if now <= deadline else None), 200, resp.headers
            except httpx.TimeoutException:
                pass  # nothing arrived in time
            return None, 200, resp.headers
        finally:
            resp.close()


def check_events_prompt(base_url: str, ca_file: str | None = None, within: float = 1.0,
                        auth: dict | None = None) -> str:
    """SSE transport: the ``endpoint`` event reaches a gzip-accepting client within ``within`` s."""
    check = "sse endpoint event"
    try:
        delay, status, headers = first_event_delay(base_url, ca_file, gzip=True, within=within, headers=auth)
    except httpx.HTTPError as exc:
        raise fail(check, f"GET /sse failed: {type(exc).__name__}: {exc}", "upstream") from exc
    if status is not None and status != 200:
        raise fail(check, f"GET /sse answered {status}", _status_cause(status, headers))
    if "upgrade" in headers or "upgrade" in headers.get("connection", "").lower():
        raise fail(check, "the response carries Upgrade/Connection: upgrade", "upgrade")
    encoding = headers.get("content-encoding")
    if delay is None:
        # Held (the upstream is up: /health passed). Ask again without gzip to tell
        # compression from buffering alone.
        plain, _, _ = first_event_delay(base_url, ca_file, gzip=False, within=within, headers=auth)
        seen = "not even the response headers" if status is None else f"Content-Encoding: {encoding or 'none'}"
        detail = (f"held back: nothing within {within:g} s with Accept-Encoding: gzip ({seen}); "
                  f"without gzip the event {'arrived' if plain is not None else 'was held too'}")
        raise fail(check, detail, "held")
    if encoding:
        raise fail(check, f"the event stream is compressed (Content-Encoding: {encoding})", "gzip")
    return f"sse: endpoint event after {delay * 1000:.0f} ms (gzip-accepting client, not compressed)"


def check_streamable_get(base_url: str, ca_file: str | None = None, timeout: float = 10,
                         auth: dict | None = None) -> str:
    """Streamable HTTP, raw: initialize returns Mcp-Session-Id and the GET stream opens uncompressed."""
    url = urljoin(base_url, "/mcp")
    hdrs = {"Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name": "mcp-edge-verify", "version": "1"}}}
    with sync_client(ca_file, timeout=timeout, extra=auth) as c:
        r = c.post(url, json=init, headers=hdrs)
        if r.status_code != 200:
            raise fail("streamable-http initialize", f"POST /mcp answered {r.status_code}",
                       _status_cause(r.status_code, r.headers))
        sid = r.headers.get("mcp-session-id")
        if not sid:
            raise fail("streamable-http initialize", "no Mcp-Session-Id in the answer", "protocol")
        common = {**hdrs, "Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL_VERSION}
        try:
            c.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=common)
            with c.stream("GET", url, headers={**common, "Accept": "text/event-stream"},
                          timeout=httpx.Timeout(timeout, read=2)) as s:
                if s.status_code != 200:
                    raise fail("streamable-http GET stream", f"GET /mcp answered {s.status_code}",
                               _status_cause(s.status_code, s.headers))
                ctype = s.headers.get("content-type", "")
                if not ctype.startswith("text/event-stream"):
                    raise fail("streamable-http GET stream", f"Content-Type {ctype!r}", "protocol")
                if s.headers.get("content-encoding"):
                    raise fail("streamable-http GET stream",
                               f"compressed (Content-Encoding: {s.headers['content-encoding']})", "gzip")
        finally:
            try:
                c.delete(url, headers=common)  # end the session: leave nothing behind
            except httpx.HTTPError:
                pass
    return "streamable-http: session id returned, GET stream opens (text/event-stream, not compressed)"


def _sdk(name: str, check, base_url: str, ca_file: str | None, timeout: float, auth: dict | None) -> dict:
    try:
        return asyncio.run(asyncio.wait_for(check(base_url, ca_file, timeout, auth), timeout * 4))
    except Exception as exc:  # noqa: BLE001 - report which check failed and why
        text = f"{type(exc).__name__}: {exc}"
        for sub in getattr(exc, "exceptions", ()):  # TaskGroup errors: show the first real one
            text += f" ({type(sub).__name__}: {sub})"
        cause = "timeout" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else "protocol"
        if any(str(s) in text for s in (" 502", " 503", " 504", "502 Bad", "503 Service")):
            cause = "upstream"
        raise fail(f"{name} (MCP SDK)", text, cause) from exc


def verify(base_url: str, ca_file: str | None = None, cert_min_days: int = 0, timeout: float = 10,
           event_within: float = 1.0, token: str | None = None, allow_listed: bool = False) -> list[str]:
    """The post-deploy checks; returns one line per passed (or skipped) check, raises
    VerifyError (naming the check and the likely cause) at the first failure.

    ``token``: sent as ``Authorization: Bearer`` on the MCP endpoints. ``allow_listed``:
    the site has an IP allow-list; when it refuses this machine the MCP checks are
    reported as skipped (the operator chose who may connect), not failed.
    """
    auth = auth_headers(token)
    lines = [check_certificate(base_url, ca_file, cert_min_days, timeout), check_health(base_url, ca_file, timeout)]
    try:
        lines.append(check_events_prompt(base_url, ca_file, event_within, auth))
    except VerifyError as exc:
        if not (allow_listed and exc.cause == "access"):
            raise
        return lines + ["SKIPPED MCP checks: the IP allow-list (nginx.access.allow) refuses this machine; "
                        "run the verification from an allowed address to cover them"]
    res = _sdk("sse", check_sse, base_url, ca_file, timeout, auth)
    lines.append(f"sse: initialize + tools/list ok ({len(res['tools'])} tools, SDK)")
    res = _sdk("streamable-http", check_streamable, base_url, ca_file, timeout, auth)
    if not res.get("session_id"):
        raise fail("streamable-http (MCP SDK)", "initialize returned no session id", "protocol")
    lines.append(f"streamable-http: initialize + tools/list ok ({len(res['tools'])} tools, SDK)")
    lines.append(check_streamable_get(base_url, ca_file, timeout, auth))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--ca-file")
    p.add_argument("--cert-min-days", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--event-within", type=float, default=1.0, help="seconds the first SSE event may take")
    p.add_argument("--allow-listed", action="store_true",
                   help="the site has an IP allow-list: a 403 skips the MCP checks instead of failing")
    args = p.parse_args(argv)
    try:
        for line in verify(args.url, args.ca_file, args.cert_min_days, args.timeout, args.event_within,
                           token=os.environ.get(TOKEN_ENV) or None, allow_listed=args.allow_listed):
            print(line if line.startswith("SKIPPED") else f"ok  {line}", flush=True)
    except VerifyError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
