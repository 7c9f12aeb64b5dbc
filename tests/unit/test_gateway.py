"""Unit tests of mcp_edge_gateway.py: the real program, the real demo stdio server, real clients.

Run: python -m pytest -q tests/unit/test_gateway.py, with aiohttp, httpx, pytest and mcp 1.x installed
(the gateway runs on the same interpreter). The SDK 2.x check runs in a venv of its own holding
mcp==2.3.0 (it cannot share one with mcp 1.x): $MCP_SDK2_PYTHON, .venv-sdk2/ or /tmp/gw-venv2/.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

from mcpedge.sse import iter_events

from .conftest import (
    ACCEPT_BOTH,
    CLIENT,
    DEMO,
    PROGRAM,
    REPO,
    GatewayProcess,
    alive,
    make_config,
    wait_for,
)

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
NOT_FOUND_BODY = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Session not found"}}
DEADLINE = 30  # seconds for any one async scenario


def initialize(rid: object = 0) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "unit", "version": "1"}}}


def call(rid: object, tool: str, **arguments: object) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


def run(coro):
    """Run one async scenario with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


# --- Raw protocol helpers -------------------------------------------------------------

def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a complete text/event-stream body (comments skipped)."""
    return list(iter_events(text.splitlines()))


async def sse_events(response: httpx.Response, comments: bool = False):
    """(event, data) pairs as they arrive; with comments=True also (":", text) per comment line."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            if comments:
                yield ":", line[1:].strip()
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def messages_of(response: httpx.Response) -> list[dict]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(data) for _, data in parse_sse(response.text)]
    return [response.json()] if response.content else []


def post(gw: GatewayProcess, message: object, sid: str | None = None, key: str = "unit",
         accept: dict | None = None) -> tuple[httpx.Response, list[dict]]:
    headers = {CLIENT: key, **(accept or ACCEPT_BOTH)}
    if sid is not None:
        headers["Mcp-Session-Id"] = sid
    r = httpx.post(gw.url("/mcp"), json=message, headers=headers, timeout=10)
    return r, messages_of(r)


async def apost(client: httpx.AsyncClient, gw: GatewayProcess, message: object, sid: str | None = None,
                key: str = "unit") -> tuple[httpx.Response, list[dict]]:
    headers = {CLIENT: key, **ACCEPT_BOTH, **({"Mcp-Session-Id": sid} if sid else {})}
    r = await client.post(gw.url("/mcp"), json=message, headers=headers)
    return r, messages_of(r)


def open_session(gw: GatewayProcess, key: str = "unit") -> str:
    """A Streamable HTTP session, initialized; returns its id."""
    r, msgs = post(gw, initialize(), key=key)
    assert r.status_code == 200, r.text
    assert msgs[0]["result"]["serverInfo"]["name"] == "mcp-demo"
    sid = r.headers["mcp-session-id"]
    assert post(gw, INITIALIZED, sid, key)[0].status_code == 202
    return sid


def echo(gw: GatewayProcess, sid: str, text: str, key: str = "unit") -> httpx.Response:
    """An echo call on a session: the response, after checking a 200 carries the text back."""
    r, msgs = post(gw, call(7, "echo", text=text), sid, key)
    if r.status_code == 200:
        assert msgs[-1]["result"]["content"][0]["text"] == text
    return r


def assert_session_gone(gw: GatewayProcess, sid: str, key: str = "unit") -> None:
    r = echo(gw, sid, "anyone there?", key)
    assert r.status_code == 404
    assert r.json() == NOT_FOUND_BODY


def check_user(received: list[dict], texts: dict[int, str], ticks: int) -> None:
    """A user saw exactly its own answers (ids 0..4, once each) and its own ticks, nothing else."""
    answers = [m for m in received if "method" not in m]
    notes = [m for m in received if "method" in m]
    assert sorted(m["id"] for m in answers) == [0, 1, 2, 3, 4], answers
    by_id = {m["id"]: m["result"] for m in answers}
    assert by_id[0]["serverInfo"]["name"] == "mcp-demo"
    for rid, text in texts.items():
        assert by_id[rid]["content"][0]["text"] == text
    assert by_id[2]["content"][0]["text"] == f"sent {ticks} ticks"
    assert {n["method"] for n in notes} <= {"notifications/message"}
    assert sorted(n["params"]["data"]["seq"] for n in notes) == list(range(1, ticks + 1))


# --- The official SDK (1.x) on both transports ---------------------------------------

async def sdk_user(gw: GatewayProcess, transport: str, i: int) -> None:
    ticks, logged = 2 + i % 3, []

    async def on_log(params) -> None:
        logged.append(params.data["seq"])

    headers = {CLIENT: f"sdk-{transport}-{i}"}
    if transport == "sse":
        connect = sse_client(gw.url("/sse"), headers=headers)
    else:
        connect = streamablehttp_client(gw.url("/mcp"), headers=headers)
    async with connect as streams, ClientSession(streams[0], streams[1], logging_callback=on_log) as session:
        init = await session.initialize()
        assert init.serverInfo.name == "mcp-demo"
        assert [t.name for t in (await session.list_tools()).tools] == ["echo", "add", "ticks"]
        assert (await session.call_tool("echo", {"text": f"sdk user {i}"})).content[0].text == f"sdk user {i}"
        result = await session.call_tool("ticks", {"count": ticks, "interval_ms": 20})
        assert result.content[0].text == f"sent {ticks} ticks"
        assert (await session.call_tool("add", {"a": i, "b": 1000})).content[0].text == str(i + 1000)
    assert sorted(logged) == list(range(1, ticks + 1))


@pytest.mark.parametrize("users", [1, 10])
@pytest.mark.parametrize("transport", ["sse", "streamable_http"])
def test_sdk_initialize_list_and_call(gateway, transport, users):
    async def scenario():
        await asyncio.gather(*(sdk_user(gateway, transport, i) for i in range(users)))

    run(scenario())
    wait_for(lambda: gateway.status()["sessions"]["total"] == 0, what="the SDK sessions to end")


# --- Isolation: many users at once, every one numbering its requests from 0 ----------

async def sse_user(client: httpx.AsyncClient, gw: GatewayProcess, i: int, barrier: asyncio.Barrier) -> None:
    key, ticks = f"sse-user-{i}", 2 + i % 4
    texts = {1: f"user {i} first", 3: f"user {i} second", 4: f"user {i} last"}
    received: list[dict] = []
    async with client.stream("GET", gw.url("/sse"), headers={CLIENT: key}) as stream:
        assert stream.status_code == 200
        events = sse_events(stream)
        event, endpoint = await anext(events)
        assert event == "endpoint"

        async def send(message: dict) -> None:
            r = await client.post(gw.origin + endpoint, json=message, headers={CLIENT: key})
            assert r.status_code == 202

        async def until_answered(*ids: int) -> None:
            waiting = set(ids)
            async for _, data in events:
                received.append(json.loads(data))
                waiting.discard(received[-1].get("id") if "method" not in received[-1] else None)
                if not waiting:
                    return

        await send(initialize(0))
        await until_answered(0)
        await send(INITIALIZED)
        await send(call(1, "echo", text=texts[1]))
        await send(call(2, "ticks", count=ticks, interval_ms=20))
        await send(call(3, "echo", text=texts[3]))
        await until_answered(1, 2, 3)
        # Everyone's traffic is over: whatever reached the wrong stream has been sent by now,
        # so it shows up before the answer to this last request.
        await barrier.wait()
        await send(call(4, "echo", text=texts[4]))
        await until_answered(4)
    check_user(received, texts, ticks)


async def http_user(client: httpx.AsyncClient, gw: GatewayProcess, i: int, barrier: asyncio.Barrier) -> None:
    key, ticks = f"http-user-{i}", 2 + i % 4
    texts = {1: f"user {i} first", 3: f"user {i} second", 4: f"user {i} last"}
    r, received = await apost(client, gw, initialize(0), key=key)
    sid = r.headers["mcp-session-id"]
    assert (await apost(client, gw, INITIALIZED, sid, key))[0].status_code == 202
    posts = await asyncio.gather(apost(client, gw, call(1, "echo", text=texts[1]), sid, key),
                                 apost(client, gw, call(2, "ticks", count=ticks, interval_ms=20), sid, key),
                                 apost(client, gw, call(3, "echo", text=texts[3]), sid, key))
    for rid, (r, msgs) in zip((1, 2, 3), posts):
        assert r.status_code == 200
        assert [m["id"] for m in msgs if "method" not in m] == [rid]  # each POST stream: its own answer
        received += msgs
    await barrier.wait()
    r, msgs = await apost(client, gw, call(4, "echo", text=texts[4]), sid, key)
    received += msgs
    assert (await client.delete(gw.url("/mcp"), headers={CLIENT: key, "Mcp-Session-Id": sid})).status_code == 200
    check_user(received, texts, ticks)


@pytest.mark.parametrize("users", [2, 10])
@pytest.mark.parametrize("transport", ["sse", "streamable_http"])
def test_users_see_only_their_own_messages(gateway, transport, users):
    user = sse_user if transport == "sse" else http_user

    async def scenario():
        barrier = asyncio.Barrier(users)
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(*(user(client, gateway, i, barrier) for i in range(users)))

    run(scenario())


def test_each_session_is_its_own_child_process(gateway):
    before = set(gateway.children())
    sids = [open_session(gateway, key=f"own-child-{i}") for i in range(3)]
    pids = set(gateway.children()) - before
    assert len(pids) == 3
    workdir = gateway.config["working_directory"]
    for pid in pids:
        env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if v)
        assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
                       "API_TOKEN": "s3cret-token-value", "GREETING": 'hello "world" = hi',
                       "INLINE": "from the config"}  # nothing of the gateway's own environment
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
        assert os.getpgid(pid) == pid  # its own process group: ending a session kills the whole tree
        assert os.readlink(f"/proc/{pid}/cwd") == workdir
    for i, sid in enumerate(sids):
        assert echo(gateway, sid, f"child {i}", key=f"own-child-{i}").status_code == 200
    assert "s3cret-token-value" not in gateway.log()  # not even at debug level


# --- Caps: per client key and in total ---------------------------------------------------

def test_caps_evict_refuse_busy_and_full(start_gateway):
    gw = start_gateway(sessions={"max_total": 3, "max_per_client": 2, "evict_min_idle": 60})
    a1, a2, b1 = open_session(gw, "A"), open_session(gw, "A"), open_session(gw, "B")
    assert echo(gw, a1, "a1 still here", "A").status_code == 200
    assert echo(gw, a2, "a2 used last", "A").status_code == 200  # a1 is now A's least recently used

    a3 = open_session(gw, "A")  # A is at max_per_client: evicts a1, not B's session
    assert_session_gone(gw, a1, "A")
    for sid, key in ((a2, "A"), (a3, "A"), (b1, "B")):
        assert echo(gw, sid, "untouched", key).status_code == 200
    wait_for(lambda: len(gw.children()) == 3, what="a1's child to go")

    # The total is reached, nobody has been idle for evict_min_idle: 503.
    r, _ = post(gw, initialize("c-init"), key="C")
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert r.json() == {"jsonrpc": "2.0", "id": "c-init",
                        "error": {"code": -32000, "message": "Server busy: too many sessions"}}

    # Both of A's sessions have a call in flight: nothing of A's can go, so 429.
    async def busy_then_open():
        async with httpx.AsyncClient(timeout=10) as client:
            started = [asyncio.Event(), asyncio.Event()]

            async def long_call(sid: str, flag: asyncio.Event) -> list[str]:
                headers = {CLIENT: "A", "Mcp-Session-Id": sid, **ACCEPT_BOTH}
                body = call(9, "ticks", count=10, interval_ms=50)
                async with client.stream("POST", gw.url("/mcp"), json=body, headers=headers) as s:
                    seen = []
                    async for _, data in sse_events(s):
                        flag.set()
                        seen.append(data)
                    return seen

            calls = [asyncio.ensure_future(long_call(sid, flag)) for sid, flag in zip((a2, a3), started)]
            await asyncio.gather(*(flag.wait() for flag in started))
            r = await client.post(gw.url("/mcp"), json=initialize(5), headers={CLIENT: "A", **ACCEPT_BOTH})
            for seen in await asyncio.gather(*calls):
                assert len(seen) == 11  # the refused session disturbed nothing: 10 ticks + result
            return r

    r = run(busy_then_open())
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert r.json() == {"jsonrpc": "2.0", "id": 5,
                        "error": {"code": -32000, "message": "Too many sessions for this client"}}
    status = gw.status()
    assert status["sessions"] == {"total": 3, "sse": 0, "streamable_http": 3, "clients": 2}
    assert status["counters"] == {"opened": 4, "closed": 1, "evicted": 1, "refused": 2, "expired": 0}
    assert "refused (client A): 429" in gw.log() and "evicted (client A)" in gw.log()


def test_evicts_any_clients_idle_session_when_full(start_gateway):
    gw = start_gateway(sessions={"max_total": 2, "max_per_client": 2, "evict_min_idle": 0.5})
    old, newer = open_session(gw, "A"), open_session(gw, "B")
    time.sleep(0.6)  # both idle past evict_min_idle (a duration to let pass, not a state to poll)
    echo(gw, newer, "B is used", "B")
    open_session(gw, "C")  # full: the least recently used idle session goes, A's
    assert_session_gone(gw, old, "A")
    assert echo(gw, newer, "B untouched", "B").status_code == 200


def test_flood_of_sessions_from_one_client(start_gateway):
    gw = start_gateway(sessions={"max_total": 8, "max_per_client": 3})
    steady = open_session(gw, "steady-client")
    with httpx.Client(timeout=10) as client:
        for i in range(50):
            r = client.post(gw.url("/mcp"), json=initialize(i), headers={CLIENT: "flooder", **ACCEPT_BOTH})
            assert r.status_code == 200, r.text
            # Evicted children are gone before a new one starts: never more than the caps allow.
            assert len(gw.children()) <= 3 + 1
            assert client.get(gw.url("/health")).json() == {"status": "ok"}
    assert gw.status()["sessions"]["total"] == 4
    assert gw.status()["counters"]["evicted"] == 50 - 3
    assert echo(gw, steady, "the other client still works", "steady-client").status_code == 200


def test_sessions_bound_to_their_client(start_gateway):
    gw = start_gateway(bind_sessions_to_client=True)
    sid = open_session(gw, "owner")
    assert_session_gone(gw, sid, "somebody-else")  # as if it did not exist
    assert echo(gw, sid, "mine", "owner").status_code == 200


# --- Session ends: idle, dead child, DELETE ------------------------------------------------

def test_idle_sessions_expire(start_gateway):
    gw = start_gateway(sessions={"idle_timeout": 0.5})
    sid = open_session(gw)
    pid = wait_for(lambda: gw.children(), what="the child")[0]

    async def sse_stream_ends():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s:
            return [e async for e, _ in sse_events(s)]  # ends when the session expires

    assert run(sse_stream_ends()) == ["endpoint"]
    wait_for(lambda: gw.status()["sessions"]["total"] == 0, what="expiry")
    wait_for(lambda: not alive(pid), what="the child to be stopped")
    assert_session_gone(gw, sid)
    assert gw.status()["counters"]["expired"] == 2


def test_child_that_dies_ends_its_session(start_gateway):
    gw = start_gateway()
    sid = open_session(gw)
    pid = wait_for(lambda: gw.children(), what="the child")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gw.status()["sessions"]["total"] == 0, what="the session to end")
    assert_session_gone(gw, sid)
    assert "its server exited" in gw.log()

    async def sse_child_dies():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s:
            events = sse_events(s)
            await anext(events)
            os.kill(wait_for(lambda: gw.children(), what="the SSE child")[0], signal.SIGKILL)
            return [e async for e in events]  # the stream closes

    assert run(sse_child_dies()) == []


def test_delete_ends_session_and_child(start_gateway):
    gw = start_gateway()
    sid = open_session(gw)
    pid = wait_for(lambda: gw.children(), what="the child")[0]
    r = httpx.delete(gw.url("/mcp"), headers={"Mcp-Session-Id": sid, CLIENT: "unit"})
    assert r.status_code == 200
    wait_for(lambda: not alive(pid), what="the child to be stopped")
    assert_session_gone(gw, sid)


# --- Streamable HTTP details ------------------------------------------------------------------

def test_json_answers_batches_and_backlog_for_get_stream(start_gateway):
    gw = start_gateway(keepalive_interval=0.2)
    sid = open_session(gw)
    json_only = {"Accept": "application/json"}
    r, msgs = post(gw, [call(1, "add", a=1, b=2), call("1", "echo", text="string id")], sid, accept=json_only)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert [(m["id"], m["result"]["content"][0]["text"]) for m in r.json()] == [(1, "3"), ("1", "string id")]
    # A JSON answer cannot carry notifications: with no stream open they wait for the GET stream.
    r, msgs = post(gw, call(2, "ticks", count=3, interval_ms=10), sid, accept=json_only)
    assert msgs == [{"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "sent 3 ticks"}]}}]

    async def get_streams():
        headers = {"Mcp-Session-Id": sid, "Accept": "text/event-stream", CLIENT: "unit"}
        async with httpx.AsyncClient(timeout=10) as client, \
                client.stream("GET", gw.url("/mcp"), headers=headers) as first:
            assert first.headers["x-accel-buffering"] == "no"
            events = sse_events(first, comments=True)
            seqs = [json.loads((await anext(events))[1])["params"]["data"]["seq"] for _ in range(3)]
            assert await anext(events) == (":", "keepalive")  # the GET stream has keepalives too
            async with client.stream("GET", gw.url("/mcp"), headers=headers) as second:
                assert second.status_code == 200  # replaces the first, never a 409
                rest = [e async for e in events if e[0] != ":"]  # the first one is closed
                return seqs, rest

    seqs, rest = run(get_streams())
    assert seqs == [1, 2, 3] and rest == []


# A stdio server that shows where the gateway routes server messages: it answers `wait`
# requests only once it holds two, after a progress notification for the first one (by
# its progressToken) and a notification that belongs to no request.
ROUTING_SERVER = """
import json, sys
def send(m): print(json.dumps(m), flush=True)
waiting = []
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": "2025-06-18", "capabilities": {},
              "serverInfo": {"name": "routing", "version": "1"}}})
    elif m.get("method") == "wait":
        waiting.append(m)
        send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "got " + m["id"]}})
        if len(waiting) == 2:
            first, second = waiting
            token = first["params"]["_meta"]["progressToken"]
            send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}})
            send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "for nobody"}})
            send({"jsonrpc": "2.0", "id": second["id"], "result": {}})
            send({"jsonrpc": "2.0", "id": first["id"], "result": {}})
"""


def test_server_messages_follow_progress_token_else_newest_post_stream(start_gateway):
    gw = start_gateway(command=[sys.executable, "-c", ROUTING_SERVER])
    r, _ = post(gw, initialize())
    sid = r.headers["mcp-session-id"]
    headers = {CLIENT: "unit", "Mcp-Session-Id": sid, **ACCEPT_BOTH}
    first = {"jsonrpc": "2.0", "id": "first", "method": "wait", "params": {"_meta": {"progressToken": 42}}}
    second = {"jsonrpc": "2.0", "id": "second", "method": "wait", "params": {}}

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as client, \
                client.stream("POST", gw.url("/mcp"), json=first, headers=headers) as one:
            events = sse_events(one)
            got = [json.loads((await anext(events))[1])]  # the server holds `first` now
            _, two = await apost(client, gw, second, sid)  # the newest open POST stream
            return got + [json.loads(data) async for _, data in events], two

    one, two = run(scenario())
    assert [m.get("params", {}).get("data", m.get("method")) for m in one] == \
        ["got first", "notifications/progress", None]
    assert one[-1] == {"jsonrpc": "2.0", "id": "first", "result": {}}
    assert [m.get("params", {}).get("data") for m in two] == ["got second", "for nobody", None]
    assert two[-1] == {"jsonrpc": "2.0", "id": "second", "result": {}}


@pytest.mark.parametrize("command, logged", [
    ("print('not json', flush=True)", "its server wrote a line that is not JSON"),
    ("print('\"' + 'x' * 70000 + '\"', flush=True)", "its server wrote a line over 65536 bytes"),
    (["/nonexistent/mcp-server"], "its server exited (exit status 127)"),
])
def test_bad_child_output_ends_its_session(start_gateway, command, logged):
    if isinstance(command, str):  # python code that writes something, then waits for its end
        command = [sys.executable, "-c", f"import time\n{command}\ntime.sleep(30)\n"]
    gw = start_gateway(command=command)

    async def stream_events():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s:
            return [e async for e, _ in sse_events(s)]  # ends with the session

    assert run(stream_events()) == ["endpoint"]
    wait_for(lambda: logged in gw.log(), what="the log line")
    wait_for(lambda: not gw.children(), what="the child to be stopped")


def test_sessionless_requests(gateway):
    before = gateway.status()["counters"]["opened"]
    r, _ = post(gateway, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert r.status_code == 400
    assert r.json()["id"] == 3 and r.json()["error"]["code"] == -32600
    for method in ("GET", "DELETE"):
        r = httpx.request(method, gateway.url("/mcp"), headers={"Accept": "text/event-stream"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"
    r, _ = post(gateway, initialize(), accept={"Accept": "text/plain"})
    assert r.status_code == 406
    assert gateway.status()["counters"]["opened"] == before  # no child was started for any of them


def test_sdk2_default_mode(gateway):
    """mcp 2.x `Client(url)` probes server/discover (2026-07-28) first, then falls back to initialize."""
    candidates = [os.environ.get("MCP_SDK2_PYTHON", ""), str(REPO / ".venv-sdk2/bin/python"),
                  "/tmp/gw-venv2/bin/python"]
    python = next((p for p in candidates if p and Path(p).exists()), None)
    if python is None:
        pytest.skip("no venv with mcp==2.3.0: make one at .venv-sdk2 (or set MCP_SDK2_PYTHON to its python)")
    script = (
        "import asyncio, json, sys\n"
        "from mcp.client import Client\n"
        "async def main():\n"
        "    async with Client(sys.argv[1]) as c:\n"
        "        tools = [t.name for t in (await c.list_tools()).tools]\n"
        "        text = (await c.call_tool('echo', {'text': 'from sdk 2'})).content[0].text\n"
        "        print(json.dumps({'tools': tools, 'text': text}))\n"
        "asyncio.run(main())\n")
    before = gateway.status()["counters"]["opened"]
    out = subprocess.run([python, "-c", script, gateway.url("/mcp")], capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"tools": ["echo", "add", "ticks"], "text": "from sdk 2"}
    assert gateway.status()["counters"]["opened"] == before + 1  # the probe opened no session


# --- Legacy SSE framing, bad input --------------------------------------------------------------

def test_sse_framing_headers_and_keepalive(start_gateway):
    gw = start_gateway(base_path="/time", keepalive_interval=0.2)

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s:
            events = sse_events(s, comments=True)
            first = await anext(events)
            keepalive = await anext(events)
            # A pretty-printed body (newlines inside) still reaches the child as one message.
            body = json.dumps(call(1, "echo", text="line\nbreak"), indent=2)
            r = await client.post(gw.origin + first[1], content=body)
            assert r.status_code == 202 and r.text == "Accepted"
            answer = None
            async for event in events:
                if event[0] == "message":
                    answer = json.loads(event[1])
                    break
            return s.headers, first, keepalive, answer

    headers, first, keepalive, answer = run(scenario())
    assert first[0] == "endpoint" and first[1].startswith("/time/message?sessionId=")
    assert keepalive == (":", "keepalive")
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "line\nbreak"}]}}
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache, no-transform"
    assert headers["x-accel-buffering"] == "no"
    assert "x-powered-by" not in headers and headers["server"] == "mcp-edge-gateway"


def test_bad_input(start_gateway):
    gw = start_gateway(base_path="/time", max_message_bytes=4096)
    sid = open_session(gw)
    mcp = {CLIENT: "unit", "Mcp-Session-Id": sid, **ACCEPT_BOTH}
    r = httpx.post(gw.url("/mcp"), content=b"{not json", headers=mcp)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = httpx.post(gw.url("/mcp"), json=call(1, "echo", text="x" * 5000), headers=mcp)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/json")
    for bad in ("x" * 129, "no/slash", "00000000-0000-0000-0000-000000000000"):
        r = httpx.post(gw.url("/mcp"), json=call(1, "echo", text="x"), headers={**mcp, "Mcp-Session-Id": bad})
        assert r.status_code == 404 and r.json() == NOT_FOUND_BODY
    message = gw.url("/message")
    assert httpx.post(message, json=INITIALIZED).status_code == 400  # no sessionId
    assert httpx.post(message + "?sessionId=../../etc", json=INITIALIZED).json() == NOT_FOUND_BODY
    assert httpx.post(message + f"?sessionId={sid}", json=INITIALIZED).status_code == 404  # not an SSE session

    async def sse_bad_bodies():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s:
            events = sse_events(s)  # kept: a dropped generator would close the stream
            endpoint = (await anext(events))[1]
            return [(await client.post(gw.origin + endpoint, content=body)).status_code
                    for body in (b"not json", b"[" + b" " * 5000 + b"]")]

    assert run(sse_bad_bodies()) == [400, 413]
    for path in ("/nope", "/time/nope", "/time/mcp/extra", "/mcp"):
        r = httpx.get(gw.origin + path)
        assert r.status_code == 404 and r.json() == {"error": "not_found"}
    assert httpx.get(gw.url("/health")).json() == {"status": "ok"}


@pytest.mark.parametrize("change, message", [
    ("not json", "is not valid JSON"),
    ({"command": "node server.js"}, "command: must be a non-empty list"),
    ({"command": None}, "command: must be"),
    ({"sessions": {"max_total": "16"}}, "sessions.max_total: must be an integer"),
    ({"base_path": "/time/"}, "base_path: must be"),
    ({"environment": {"API_TOKEN": 12345678}}, "environment: must be"),
    ({"surprise": 1}, "unknown key 'surprise'"),
    ({"working_directory": "/nonexistent/dir"}, "not a directory"),
    ({"log_level": "trace"}, "log_level: must be"),
    ({"env_file": "/nonexistent/server.env"}, "env_file /nonexistent/server.env: cannot read it"),
    ("bad env file", "server.env, line 2: expected NAME=<JSON string>"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, change, message):
    path = tmp_path / "bad.json"
    if change == "not json":
        path.write_text("{nope")
    else:
        config = make_config(tmp_path)
        if change == "bad env file":
            Path(config["env_file"]).write_text('OK="fine"\nAPI_TOKEN=12345678 unquoted\n')
        else:
            config.update(change)
        path.write_text(json.dumps(config))
    out = subprocess.run([sys.executable, *PROGRAM, "--config", str(path)],
                         capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert "12345678" not in out.stderr and "s3cret" not in out.stderr  # never a value from the config


def test_accepts_the_config_and_env_file_the_deploy_writes(tmp_path):
    """The contract with the deploy's model (needs the deploy's own requirements: pyyaml, jinja2)."""
    context = pytest.importorskip("mcpedge.model.ubuntu")
    settings = pytest.importorskip("mcpedge.settings")
    jinja2 = pytest.importorskip("jinja2")
    server = context.GatewayServer("unit")
    environment = {"API_TOKEN": settings.Secret('s3cret "quoted" = value'), "PLAIN": "x y"}
    lines = context.env_file_lines(environment)
    template = (REPO / "templates/etc/mcp-edge/gateway.env.j2").read_text()
    env_file = tmp_path / "unit.env"
    env_file.write_text(jinja2.Template(template).render(gw={"server": server, "env_lines": lines}))
    gw_settings = {"command": ["node", str(DEMO)], "working_directory": str(tmp_path),
                   "sessions": {"max_total": 4, "max_per_client": 2, "idle_timeout": 1800, "evict_min_idle": 60},
                   "keepalive_interval": 25, "log_level": "info"}
    config = {**context.gateway_config(gw_settings, server), "env_file": str(env_file)}
    gw = GatewayProcess(tmp_path, config)
    try:
        open_session(gw)
        pid = gw.children()[0]
        env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if v)
        assert env["API_TOKEN"] == 's3cret "quoted" = value' and env["PLAIN"] == "x y"
    finally:
        assert gw.stop() == 0
    assert "s3cret" not in gw.log()


# --- Listening: unix socket, systemd socket activation; stopping ------------------------------

def unix_client(path: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://gateway", timeout=10)


def test_unix_socket(start_gateway, tmp_path):
    sock = str(tmp_path / "gw.sock")
    gw = start_gateway(listen=f"unix:{sock}")
    with unix_client(sock) as client:
        assert client.get("/health").json() == {"status": "ok"}
        r = client.post("/mcp", json=initialize(), headers=ACCEPT_BOTH)
        sid = r.headers["mcp-session-id"]
        r = client.post("/mcp", json=call(1, "add", a=2, b=3), headers={**ACCEPT_BOTH, "Mcp-Session-Id": sid})
        assert messages_of(r)[0]["result"]["content"][0]["text"] == "5"
    assert len(gw.children()) == 1


def test_systemd_socket_activation(tmp_path):
    path = str(tmp_path / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    fd = listener.fileno()
    config = tmp_path / "activated.json"
    config.write_text(json.dumps(make_config(tmp_path)))
    # As systemd does: the socket on fd 3, LISTEN_PID = the gateway's own pid (kept by exec).
    activate = ("import os, sys\nos.dup2(int(sys.argv[1]), 3)\n"
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\nos.execv(sys.argv[2], sys.argv[2:])\n")
    argv = [sys.executable, "-c", activate, str(fd), sys.executable, *PROGRAM, "--config", str(config)]
    gw = GatewayProcess(tmp_path, make_config(tmp_path), argv=argv, pass_fds=(fd,))
    listener.close()
    try:
        with unix_client(path) as client:
            assert client.get("/health").json() == {"status": "ok"}
    finally:
        assert gw.stop() == 0


def test_sigterm_ends_every_session_and_exits_0(start_gateway, tmp_path):
    # One child that ignores SIGTERM and outlives EOF on stdin: it must be SIGKILLed.
    stubborn = [sys.executable, "-c", ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                       "sys.stdin.read()\ntime.sleep(60)\n")]
    gw = start_gateway()
    stubborn_gw = start_gateway(command=stubborn)
    open_session(gw, "a")
    open_session(gw, "b")

    async def hold_streams_then_stop():
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", gw.url("/sse")) as s, \
                client.stream("GET", stubborn_gw.url("/sse")) as t:
            events, stubborn_events = sse_events(s), sse_events(t)
            await anext(events)
            await anext(stubborn_events)
            pids = gw.children() + stubborn_gw.children()
            for g in (gw, stubborn_gw):
                g.proc.send_signal(signal.SIGTERM)
            return pids, [e async for e in events]

    pids, rest = run(hold_streams_then_stop())
    assert len(pids) == 4 and rest == []
    for g in (gw, stubborn_gw):
        assert g.proc.wait(timeout=5) == 0
    assert not any(alive(pid) for pid in pids)
