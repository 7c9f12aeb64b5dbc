"""Run the MCP clients real users run against a URL, one way for all of them.

    from tests.clients import run as clients
    clients.tools("mcp-remote", "https://mcp.example.test/mcp", transport="streamable-http",
                  ca_file="/path/ca.pem", headers={"Authorization": "Bearer ..."})
    -> {"tools": ["echo", "add", "ticks"], "call": "hi", "client": "mcp-remote", "version": "0.15.1"}

Every client lists the tools, then (unless ``call=None``) calls one tool and returns the text of
its result; any failure raises :class:`ClientError` carrying the tail of the client's own stderr.
:func:`missing` says why a client cannot run here (its kit is not installed), for a test to skip.

The clients (``CLIENTS``), each over ``streamable-http`` and ``sse`` (``TRANSPORTS``):

- ``python-sdk-1``: the MCP Python SDK 1.x (requirements.txt: mcp==1.22.0), ``ClientSession`` over
  ``streamablehttp_client`` / ``sse_client``, in a subprocess of the project venv
  ($MCP_SDK1_PYTHON, .venv/bin/python, else this interpreter). It runs this file as a script.
- ``python-sdk-2``: the newest Python SDK (requirements-sdk2.txt: mcp==2.3.0), ``mcp.client.Client``
  in its default mode (``mode="auto"``: probes the 2026-07-28 ``server/discover`` first, falls back
  to ``initialize``), in its own venv ($MCP_SDK2_PYTHON, else .venv-sdk2/bin/python). With no
  header and no CA it is exactly ``Client(url)``; otherwise ``Client(streamable_http_client(url,
  http_client=...))`` or ``Client(sse_client(url, ...))``.
- ``typescript-sdk``: @modelcontextprotocol/sdk 1.x, ``Client`` with ``StreamableHTTPClientTransport``
  or ``SSEClientTransport`` (tests/clients/ts-client.mjs).
- ``inspector-cli``: ``npx --prefix tests/clients --no -- @modelcontextprotocol/inspector --cli <url>
  --transport http|sse --format json --method tools/list``, and ``--method tools/call --tool-name echo
  --tool-args-json '{"text": "hi"}'`` (``--tool-arg text=hi`` would coerce values): two one-shot
  runs, side by side, each its own connection and session. ``--no``: npx never downloads.
- ``mcp-remote``: ``tests/clients/node_modules/.bin/mcp-remote <url> --transport http-only|sse-only``,
  spoken to over its stdio (newline-delimited JSON-RPC) as Claude Desktop does: initialize,
  notifications/initialized, tools/list, tools/call.

The Node clients come from tests/clients/package-lock.json: ``npm ci --prefix tests/clients
--no-audit --no-fund``. Each Node run gets a throw-away HOME (and MCP_REMOTE_CONFIG_DIR,
MCP_INSPECTOR_SECRET_STORE=memory), so none reads or writes the user's ~/.mcp-auth or
~/.mcp-inspector.

How a private CA (``ca_file``) reaches each: Node clients get ``NODE_EXTRA_CA_CERTS=<ca_file>`` (added
to Node's bundled roots); the Python SDKs get ``ssl.create_default_context(cafile=ca_file)`` as their
httpx's ``verify`` (that file alone is trusted then).

How headers (a bearer token) reach each, never on a command line (``/proc/<pid>/cmdline`` is world
readable; a process's environment and its stdin are not):

- python-sdk-1/2, typescript-sdk: in the JSON spec written to the client's stdin.
- inspector-cli: a session config file ``{"mcpServers": {"target": {"type", "url", "headers"}}}``
  written to its stdin and read as ``--config /dev/stdin --server target`` (its ``--header`` flag
  would put them on the command line).
- mcp-remote: ``--header 'Name:${MCP_EDGE_HEADER_<i>}'`` with the value in that environment variable
  (mcp-remote substitutes ``${VAR}`` in header values; only the names are on its command line).

Every subprocess runs in a process group of its own and is killed with it at ``timeout``; every
loop has a deadline.

What the pinned clients do that a server sees (tests/unit/test_clients.py measures the first):

- Streamable HTTP sessions left open (no DELETE on exit): typescript-sdk 1 (``Client.close()``),
  inspector-cli 1 per run, mcp-remote 2 per start (its connection-test client's, and the real one).
  The Python SDKs send DELETE. SSE sessions end with their stream.
- mcp-remote refuses ``http://`` URLs other than localhost/127.0.0.1 (``--allow-http`` would allow
  them; not passed). Its OAuth discovery first GETs the URL itself: on ``/sse`` that opens an SSE
  session of its own (three SSE sessions per start in all, each with its child: two are extra).
- The Inspector 2.x declares Node >= 22.19 (its CLI runs on Node 20, but it loads undici 8, which
  needs Node 22, when HTTP(S)_PROXY is set).
- A 301 from http:// to https:// (nginx's port-80 redirect) breaks every client on the POST; with a
  308 all but mcp-remote (http refused) and the Inspector's SSE follow it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent
REPO = KIT.parents[1]
NODE_MODULES = KIT / "node_modules"
TS_CLIENT = KIT / "ts-client.mjs"

CLIENTS = ("python-sdk-1", "python-sdk-2", "typescript-sdk", "inspector-cli", "mcp-remote")
# The transports each client speaks (all of them speak both).
TRANSPORTS = {client: ("streamable-http", "sse") for client in CLIENTS}
# The npm package each Node client is, in tests/clients/node_modules.
PACKAGES = {"typescript-sdk": "@modelcontextprotocol/sdk", "inspector-cli": "@modelcontextprotocol/inspector",
            "mcp-remote": "mcp-remote"}
INSTALL = "npm ci --prefix tests/clients --no-audit --no-fund"
TAIL = 4000  # characters of a client's stderr kept in a ClientError
HANDSHAKE_VERSION = "2025-11-25"  # what mcp-remote's stdio client (us, as a desktop host) offers
HEADER_NAME = re.compile(r"[A-Za-z0-9_-]+")  # what every client (mcp-remote the strictest) accepts


class ClientError(RuntimeError):
    """A client could not list the tools or call one; ``stderr`` is the tail of its own stderr."""

    def __init__(self, client: str, message: str, stderr: str = "") -> None:
        self.client, self.stderr = client, stderr[-TAIL:]
        super().__init__(f"{client}: {message}" + (f"\n--- its stderr (tail) ---\n{self.stderr}" if stderr else ""))


# --- Which clients can run here ---------------------------------------------------------------

def _python(client: str) -> str | None:
    """The interpreter holding the SDK of `client` (the override variable first)."""
    if client == "python-sdk-1":
        candidates = [os.environ.get("MCP_SDK1_PYTHON", ""), str(REPO / ".venv/bin/python"), sys.executable]
    else:
        candidates = [os.environ.get("MCP_SDK2_PYTHON", ""), str(REPO / ".venv-sdk2/bin/python")]
    return next((p for p in candidates if p and Path(p).exists()), None)


def missing(client: str) -> str | None:
    """Why `client` cannot run on this machine (what to install), or None when it can."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    if client.startswith("python-sdk-"):
        if _python(client) is None:
            venv, var = (".venv", "MCP_SDK1_PYTHON") if client == "python-sdk-1" else (".venv-sdk2", "MCP_SDK2_PYTHON")
            return f"{client}: no {venv}/bin/python (make setup), nor ${var}"
        return None
    if shutil.which("node") is None:
        return f"{client}: no `node` on PATH"
    if not (NODE_MODULES / PACKAGES[client] / "package.json").exists():
        return f"{client}: the client kit is not installed ({INSTALL})"
    if client == "inspector-cli" and shutil.which("npx") is None:
        return f"{client}: no `npx` on PATH"
    return None


def _package_version(client: str) -> str:
    return json.loads((NODE_MODULES / PACKAGES[client] / "package.json").read_text())["version"]


# --- Processes --------------------------------------------------------------------------------

def _kill_group(proc: subprocess.Popen) -> None:
    """End what is left of the process group `proc` leads (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(client: str, argv: list[str], *, stdin: str, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Run `argv` to its end with `stdin`; (stdout, stderr), or ClientError on a non-zero exit or timeout."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True, cwd=KIT)
    except OSError as e:
        raise ClientError(client, f"cannot start {argv[0]}: {e}") from e
    try:
        out, err = proc.communicate(stdin.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = b"", b"(its output could not be collected)"
        raise ClientError(client, f"no result within {timeout:.1f}s", err.decode(errors="replace")) from None
    finally:
        _kill_group(proc)  # a grandchild left behind (npx -> node) goes with the group
        if proc.poll() is None:
            proc.wait(timeout=5)
    out_text, err_text = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise ClientError(client, f"exited with {proc.returncode}; stdout: {out_text[-1000:]!r}", err_text)
    return out_text, err_text


def _last_json(client: str, out: str, err: str) -> dict:
    """The last line of `out` that is a JSON object."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise ClientError(client, f"no JSON result on stdout: {out[-1000:]!r}", err)


def _node_env(home: str, ca_file: str | None) -> dict[str, str]:
    # Nothing of the user's: no npm config from a calling npm, no Inspector catalog, storage or OAuth state.
    own = ("MCP_CATALOG_PATH", "MCP_CLIENT_CONFIG_PATH", "MCP_STORAGE_DIR", "MCP_INSPECTOR_OAUTH_STATE_PATH")
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_") and k not in own}
    env.update(HOME=home, MCP_REMOTE_CONFIG_DIR=str(Path(home) / "mcp-auth"), MCP_INSPECTOR_SECRET_STORE="memory",
               NO_UPDATE_NOTIFIER="1", NPM_CONFIG_UPDATE_NOTIFIER="false", NO_COLOR="1")
    env.pop("NODE_EXTRA_CA_CERTS", None)
    if ca_file:
        env["NODE_EXTRA_CA_CERTS"] = ca_file
    return env


# --- The clients ------------------------------------------------------------------------------

def _python_sdk(client: str, url: str, transport: str, ca_file: str | None, headers: dict[str, str],
                call: tuple[str, dict] | None, timeout: float) -> dict:
    python = _python(client)
    spec = {"sdk": 1 if client == "python-sdk-1" else 2, "url": url, "transport": transport, "ca_file": ca_file,
            "headers": headers, "call": list(call) if call else None, "timeout": timeout}
    # -I: the venv's own mcp, whatever PYTHONPATH a caller set (and no script directory on sys.path)
    out, err = _run(client, [python, "-I", str(Path(__file__).resolve())], stdin=json.dumps(spec),
                    env=dict(os.environ), timeout=timeout)
    result = _last_json(client, out, err)
    if not result.get("version", "").startswith(f"{spec['sdk']}."):
        raise ClientError(client, f"{python} has mcp {result.get('version')}, not {spec['sdk']}.x", err)
    return result


def _typescript_sdk(client: str, url: str, transport: str, ca_file: str | None, headers: dict[str, str],
                    call: tuple[str, dict] | None, timeout: float) -> dict:
    spec = {"url": url, "transport": transport, "headers": headers, "call": list(call) if call else None,
            "timeout_ms": int(timeout * 1000)}
    with tempfile.TemporaryDirectory(prefix="mcp-client-") as home:
        out, err = _run(client, ["node", str(TS_CLIENT)], stdin=json.dumps(spec), env=_node_env(home, ca_file),
                        timeout=timeout)
    result = _last_json(client, out, err)
    return {"tools": result["tools"], "call": result["call"], "version": _package_version(client)}


def _inspector_cli(client: str, url: str, transport: str, ca_file: str | None, headers: dict[str, str],
                   call: tuple[str, dict] | None, timeout: float) -> dict:
    kind = "http" if transport == "streamable-http" else "sse"
    if headers:  # a session config on stdin: its --header flag would put them on the command line
        target = ["--config", "/dev/stdin", "--server", "target"]
        stdin = json.dumps({"mcpServers": {"target": {"type": kind, "url": url, "headers": headers}}})
    else:
        target, stdin = [url, "--transport", kind], ""
    base = ["npx", "--prefix", str(KIT), "--no", "--", PACKAGES[client], "--cli", *target, "--format", "json"]
    deadline = time.monotonic() + timeout

    def method(*args: str) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(client, f"no result within {timeout:g}s")
        with tempfile.TemporaryDirectory(prefix="mcp-client-") as home:
            out, err = _run(client, [*base, *args], stdin=stdin, env=_node_env(home, ca_file), timeout=remaining)
        answer = _last_json(client, out, err)
        if "result" not in answer:
            raise ClientError(client, f"{' '.join(args)}: {answer}", err)
        return answer["result"]

    # Two one-shot runs (each its own connection and session), side by side to halve the wait.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        listed = pool.submit(method, "--method", "tools/list")
        if call:
            name, arguments = call
            # --tool-args-json passes the values verbatim (--tool-arg key=value would coerce "1" to 1)
            called = pool.submit(method, "--method", "tools/call", "--tool-name", name,
                                 "--tool-args-json", json.dumps(arguments))
        names = [t["name"] for t in listed.result()["tools"]]
        text = _tool_text(client, name, called.result()) if call else None
    return {"tools": names, "call": text, "version": _package_version(client)}


def _tool_text(client: str, name: str, result: dict) -> str:
    if result.get("isError"):
        raise ClientError(client, f"tool {name} returned an error: {result.get('content')}")
    return "".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")


def _mcp_remote(client: str, url: str, transport: str, ca_file: str | None, headers: dict[str, str],
                call: tuple[str, dict] | None, timeout: float) -> dict:
    argv = [str(NODE_MODULES / ".bin/mcp-remote"), url, "--transport",
            "http-only" if transport == "streamable-http" else "sse-only"]
    with tempfile.TemporaryDirectory(prefix="mcp-client-") as home:
        env = _node_env(home, ca_file)
        for i, (name, value) in enumerate(headers.items()):
            env[f"MCP_EDGE_HEADER_{i}"] = value
            argv += ["--header", f"{name}:${{MCP_EDGE_HEADER_{i}}}"]
        return _mcp_remote_session(client, argv, env, call, timeout)


def _mcp_remote_session(client: str, argv: list[str], env: dict[str, str], call: tuple[str, dict] | None,
                        timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True, cwd=KIT)
    except OSError as e:
        raise ClientError(client, f"cannot start {argv[0]}: {e}") from e
    lines: queue.Queue[bytes | None] = queue.Queue()
    stderr: collections.deque[str] = collections.deque(maxlen=400)

    def pump_stdout() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        for line in proc.stderr:
            stderr.append(line.decode(errors="replace"))

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_stdout, pump_stderr)]
    for t in readers:
        t.start()

    def fail(message: str) -> ClientError:
        return ClientError(client, message, "".join(stderr))

    def send(message: dict) -> None:
        try:
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
        except OSError as e:
            raise fail(f"its stdin closed ({e}); exit {proc.poll()}") from e

    def answer(rid: int) -> dict:
        for _ in range(10_000):  # bounded: notifications and stray messages are skipped
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise fail(f"no answer to request {rid} within {timeout:g}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                proc.wait(timeout=5)
                raise fail(f"its stdout closed before answering request {rid}; exit {proc.returncode}")
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours: mcp-remote logs to stderr, but be lenient
            if "method" in message:
                if "id" in message:  # a request to the host: we offer none of the capabilities it needs
                    send({"jsonrpc": "2.0", "id": message["id"],
                          "error": {"code": -32601, "message": "not supported by this host"}})
                continue
            if message.get("id") == rid:
                if "error" in message:
                    raise fail(f"request {rid} failed: {message['error']}")
                return message["result"]
        raise fail(f"too many messages before the answer to request {rid}")

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcp-edge-tests", "version": "1.0.0"}}})
        answer(0)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        names = [t["name"] for t in answer(1)["tools"]]
        text = None
        if call:
            name, arguments = call
            send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
            text = _tool_text(client, name, answer(2))
        return {"tools": names, "call": text, "version": _package_version(client)}
    finally:
        try:  # the host goes away as Claude Desktop's does: stdin closes; the bridge should exit
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc)
        if proc.poll() is None:
            proc.wait(timeout=5)
        for t in readers:
            t.join(timeout=2)


RUNNERS = {"python-sdk-1": _python_sdk, "python-sdk-2": _python_sdk, "typescript-sdk": _typescript_sdk,
           "inspector-cli": _inspector_cli, "mcp-remote": _mcp_remote}


def tools(client: str, url: str, *, transport: str, ca_file: str | None, headers: dict | None = None,
          call: tuple[str, dict] | None = ("echo", {"text": "hi"}), timeout: float = 60) -> dict:
    """List the tools at `url` with `client` over `transport`, then call `call` (name, arguments).

    Returns {"tools": [names], "call": text of the tool's result or None, "client", "version"};
    raises ClientError (with the client's stderr tail) when it cannot, and when the kit is missing.
    `ca_file`: a PEM bundle the client must trust (None: its default roots). `headers`: sent on every
    request, never put on a command line. `timeout`: seconds for the whole run.
    """
    if client not in RUNNERS:
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    if transport not in TRANSPORTS[client]:
        raise ClientError(client, f"does not speak {transport!r} (only {', '.join(TRANSPORTS[client])})")
    if ca_file is not None and not Path(ca_file).is_file():
        raise ClientError(client, f"no CA file at {ca_file}")
    headers = {str(k): str(v) for k, v in (headers or {}).items()}
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise ClientError(client, f"header {name!r}: names of letters, digits, '-' and '_', values of one line")
    if (reason := missing(client)) is not None:
        raise ClientError(client, reason)
    result = RUNNERS[client](client, url, transport, ca_file, headers, call, timeout)
    return {"tools": result["tools"], "call": result["call"], "client": client, "version": result["version"]}


# --- The Python SDK clients, run as a script in the SDK's own venv ----------------------------------

def _python_main() -> None:
    """Read the spec on stdin, run the SDK it names, print one JSON line {tools, call, version}."""
    import asyncio
    import importlib.metadata
    import ssl

    spec = json.load(sys.stdin)
    ctx = ssl.create_default_context(cafile=spec["ca_file"]) if spec["ca_file"] else None
    url, headers, call = spec["url"], spec["headers"] or None, spec["call"]

    async def session_v1() -> tuple[list[str], str | None]:
        import httpx
        from mcp import ClientSession
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamablehttp_client

        def factory(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:
            # the SDK's own create_mcp_http_client, plus the CA
            return httpx.AsyncClient(headers=headers, timeout=timeout or httpx.Timeout(30.0), auth=auth,
                                     follow_redirects=True, **({"verify": ctx} if ctx else {}))

        if spec["transport"] == "sse":
            connect = sse_client(url, headers=headers, httpx_client_factory=factory)
        else:
            connect = streamablehttp_client(url, headers=headers, httpx_client_factory=factory)
        async with connect as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            names = [t.name for t in (await session.list_tools()).tools]
            result = await session.call_tool(call[0], call[1]) if call else None
            return names, result

    async def session_v2() -> tuple[list[str], str | None]:
        import httpx2
        from mcp.client import Client
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client

        def factory(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers=headers, timeout=timeout or httpx2.Timeout(30.0, read=300.0),
                                      auth=auth, **({"verify": ctx} if ctx else {}))

        async def use(server) -> tuple[list[str], str | None]:
            async with Client(server) as client:  # the default mode: "auto" (server/discover first)
                names = [t.name for t in (await client.list_tools()).tools]
                result = await client.call_tool(call[0], call[1]) if call else None
                return names, result

        if spec["transport"] == "sse":
            return await use(sse_client(url, headers=headers, httpx_client_factory=factory))
        if headers is None and ctx is None:
            return await use(url)  # exactly what a user writes
        async with factory(headers=headers) as http_client:
            return await use(streamable_http_client(url, http_client=http_client))

    async def main() -> None:
        names, result = await (session_v1() if spec["sdk"] == 1 else session_v2())
        text = None
        if result is not None:
            if getattr(result, "is_error", None) or getattr(result, "isError", None):  # 2.x: snake_case
                raise RuntimeError(f"tool {call[0]} returned an error: {result.content}")
            text = "".join(getattr(c, "text", "") for c in result.content if c.type == "text")
        print(json.dumps({"tools": names, "call": text, "version": importlib.metadata.version("mcp")}), flush=True)

    asyncio.run(asyncio.wait_for(main(), spec["timeout"]))


if __name__ == "__main__":
    _python_main()
