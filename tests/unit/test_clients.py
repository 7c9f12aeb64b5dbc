"""The MCP clients real users run, against the gateway run locally (tests/clients/run.py).

Every client of tests/clients/run.py (the Python SDK 1.x and 2.x, the TypeScript SDK, the
Inspector CLI, mcp-remote) over every transport it speaks, against the real program wrapping the
demo stdio server: each lists the demo's tools and gets "hi" back from echo,

- over plain HTTP on 127.0.0.1, and how many Streamable HTTP sessions each leaves behind;
- over HTTPS signed by a private CA (a TLS front that forwards bytes to the gateway, as nginx
  would), trusting that CA through run.py's `ca_file`, sending a bearer token and the client key
  as headers: the gateway binds sessions to the client key, so every request must carry them,
  and no process's command line may ever show the token;
- over the same HTTPS without the CA: each must refuse the certificate.

A Node client whose kit is not installed (npm ci --prefix tests/clients --no-audit --no-fund)
is skipped, saying so; so is a Python SDK without its venv. Every wait has a deadline.
Run: python -m pytest -q tests/unit/test_clients.py
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import threading
import time
from pathlib import Path

import pytest

from tests.clients import run as clients

from .conftest import CLIENT, GatewayProcess, make_ca_and_cert, make_config, wait_for

TOOLS = ["echo", "add", "ticks"]
CASES = [(client, transport) for client in clients.CLIENTS for transport in clients.TRANSPORTS[client]]
IDS = [f"{client}-{transport}" for client, transport in CASES]
TIMEOUT = 45  # seconds for one client run (each takes 1-5 s here)
# Streamable HTTP sessions a client leaves open when it is done (nobody sends DELETE): they stay,
# each with its child, until the gateway's idle timeout or an eviction. Measured with the
# versions pinned in tests/clients; a change here is a change of the client.
LEFT_OPEN = {
    ("typescript-sdk", "streamable-http"): 1,  # Client.close() closes the transport, sends no DELETE
    ("inspector-cli", "streamable-http"): 2,   # one per run (tools/list, tools/call), no DELETE
    ("mcp-remote", "streamable-http"): 2,      # its connection-test client's session, and the real one
}


def path_for(transport: str) -> str:
    return "/mcp" if transport == "streamable-http" else "/sse"


def need(client: str) -> None:
    if (reason := clients.missing(client)) is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory):
    """One gateway for the module: sessions bound to the client key, roomy limits."""
    tmp_path = tmp_path_factory.mktemp("clients")
    gateway = GatewayProcess(tmp_path, make_config(tmp_path, bind_sessions_to_client=True,
                                                   sessions={"max_total": 256, "max_per_client": 128}))
    yield gateway
    gateway.stop()


# --- Plain HTTP ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("client", "transport"), CASES, ids=IDS)
def test_client_lists_and_calls(gw, client, transport):
    need(client)
    before = gw.status()["sessions"]["total"]
    result = clients.tools(client, gw.url(path_for(transport)), transport=transport, ca_file=None, timeout=TIMEOUT)
    assert result["tools"] == TOOLS, result
    assert result["call"] == "hi", result
    assert result["client"] == client and result["version"], result
    # SSE sessions end with their stream (after the client exits); count once that has happened.
    left = LEFT_OPEN.get((client, transport), 0)
    wait_for(lambda: gw.status()["sessions"]["total"] - before <= left, timeout=5,
             what=f"{client} to end its sessions")
    assert gw.status()["sessions"]["total"] - before == left


# --- HTTPS with a private CA, headers -----------------------------------------------------------

class TLSFront:
    """A TLS listener on 127.0.0.1 forwarding each connection's bytes to the gateway, in a thread."""

    def __init__(self, upstream: str, cert: Path, key: Path) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = host, int(port)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)  # refused handshakes are the point of a test
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context))
        self.origin = f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def tls(gw, tmp_path_factory: pytest.TempPathFactory):
    ca, cert, key = make_ca_and_cert(tmp_path_factory.mktemp("ca"))
    front = TLSFront(gw.origin, cert, key)
    yield front, str(ca)
    front.close()


class CommandLineWatch:
    """Reads every process's command line (/proc/*/cmdline) every 50 ms until stopped: where `secret` shows.

    Each client process lives for a second or more, its argv unchanged: 50 ms cannot miss one."""

    def __init__(self, secret: str) -> None:
        self.secret, self.seen = secret.encode(), []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.05):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes()
                except OSError:
                    continue
                if self.secret in argv:
                    self.seen.append(argv.replace(b"\0", b" ").decode(errors="replace"))

    def stop(self) -> list[str]:
        self.stopped.set()
        self.thread.join(timeout=5)
        return self.seen


@pytest.mark.parametrize(("client", "transport"), CASES, ids=IDS)
def test_client_over_https_with_private_ca_and_headers(gw, tls, client, transport):
    need(client)
    front, ca_file = tls
    key, token = f"hdr-{client}-{transport}", secrets.token_urlsafe(24)
    unknown = gw.log().count("client unknown,")
    watch = CommandLineWatch(token)
    try:
        result = clients.tools(client, front.origin + path_for(transport), transport=transport, ca_file=ca_file,
                               headers={CLIENT: key, "Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    finally:
        seen = watch.stop()
    assert seen == [], f"the token was on a command line: {seen}"
    assert (result["tools"], result["call"]) == (TOOLS, "hi"), result
    # Every session it opened carried the client key (sessions bound to it: so did each later request).
    kind = "streamable_http" if transport == "streamable-http" else "sse"
    assert re.search(rf"opened \({kind}, client {re.escape(key)},", gw.log()), gw.log()[-3000:]
    assert gw.log().count("client unknown,") == unknown, "a request came without the headers"


@pytest.mark.parametrize("client", clients.CLIENTS)
def test_client_refuses_a_certificate_it_was_not_given_the_ca_of(gw, tls, client):
    need(client)
    front, _ = tls
    transport = clients.TRANSPORTS[client][0]
    opened = gw.status()["counters"]["opened"]
    t0 = time.monotonic()
    with pytest.raises(clients.ClientError):
        clients.tools(client, front.origin + path_for(transport), transport=transport, ca_file=None, timeout=TIMEOUT)
    assert time.monotonic() - t0 < TIMEOUT - 5, "it failed by timing out, not by refusing the certificate"
    assert gw.status()["counters"]["opened"] == opened  # nothing got through


# --- run.py itself ---------------------------------------------------------------------------------

def test_run_refuses_what_it_cannot_do_safely(tmp_path):
    with pytest.raises(ValueError):
        clients.tools("curl", "http://127.0.0.1:9/mcp", transport="sse", ca_file=None)
    with pytest.raises(clients.ClientError, match="does not speak"):
        clients.tools("mcp-remote", "http://127.0.0.1:9/mcp", transport="stdio", ca_file=None)
    with pytest.raises(clients.ClientError, match="no CA file"):
        clients.tools("python-sdk-1", "https://127.0.0.1:9/mcp", transport="streamable-http",
                      ca_file=str(tmp_path / "absent.pem"))
    with pytest.raises(clients.ClientError, match="header"):
        clients.tools("python-sdk-1", "http://127.0.0.1:9/mcp", transport="streamable-http", ca_file=None,
                      headers={"X-Bad": "two\r\nlines"})
