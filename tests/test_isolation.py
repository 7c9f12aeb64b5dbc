"""One user's messages never reach another user, on every transport of both targets.

Users connect at the same time, each numbering its JSON-RPC requests from 1 as
every SDK does (so their ids collide), and interleave echo calls carrying their
own marker with a `ticks` call that streams notifications. Each user must get
exactly its own results and notifications, and nothing of anyone else's.

All users come from this machine, i.e. one client address: the settings variant
here lets one address hold 12 sessions (the default is 4, see test_limits.py)
and raises the per-address POST rate, so the caps are not what is tested.
"""

import asyncio
import json
import threading

import httpx
import pytest
import yaml
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client

import sandbox as bench
from mcpedge.verify import SseStream, client_factory, ssl_context, sync_client

pytestmark = pytest.mark.usefixtures("deployed")

NAS_CA = str(bench.STATE / "ca" / "ca.pem")
CALLS = 4  # echo calls per user, interleaved with one ticks call
TICKS = 3


@pytest.fixture(scope="module")
def roomy(deployed):
    """Both targets with room for 12 sessions and fast POSTs from this one address."""
    data = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    data["ubuntu"]["gateway"]["sessions"] = {"max_per_client": 12, "max_total": 24}
    for group in ("ubuntu", "synology"):
        data[group].setdefault("nginx", {})["rate_limit"] = {"per_ip": "500r/s", "per_ip_burst": 500}
    res = bench.apply(settings=bench.write_settings(data, name="settings-isolation.yaml"))
    assert res["rc"] == 0, res["log"][-3000:]
    yield
    res = bench.apply()
    assert res["rc"] == 0, res["log"][-3000:]


def target(group):
    t = bench.TARGETS[group]
    return t, (str(bench.STATE / "pebble-root.pem") if group == "ubuntu" else NAS_CA)


class StreamableUser:
    """A raw Streamable HTTP client: POSTs answered as SSE (or JSON), ids from 1."""

    def __init__(self, client: httpx.Client, url: str):
        self.c, self.url, self.sid, self.next_id = client, url, None, 0
        self.received: list[dict] = []

    def _headers(self):
        h = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        if self.sid:
            h["Mcp-Session-Id"] = self.sid
        return h

    def request(self, method, params=None):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        with self.c.stream("POST", self.url, json=msg, headers=self._headers()) as r:
            assert r.status_code == 200, (r.status_code, r.read()[:300])
            self.sid = self.sid or r.headers["mcp-session-id"]
            if r.headers["content-type"].startswith("application/json"):
                self.received.append(json.loads(r.read()))
            else:
                data = []
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        self.received.append(json.loads("\n".join(data)))
                        data = []
        return self.next_id

    def notify(self, method):
        r = self.c.post(self.url, json={"jsonrpc": "2.0", "method": method}, headers=self._headers())
        assert r.status_code == 202, r.status_code

    def close(self):
        if self.sid:
            self.c.delete(self.url, headers=self._headers())


def _run_sse_user(base_url, ca_file, user, barrier, out):
    with sync_client(ca_file, timeout=30, read_timeout=30) as client:
        stream = SseStream(client, base_url).open()
        received = []
        try:
            stream.initialize()
            barrier.wait(30)
            ids = {}
            for k in range(1, CALLS + 1):  # interleaved with every other user's calls
                ids[stream.post("tools/call", {"name": "echo", "arguments": {"text": f"user{user}-call{k}"}})] = k
                if k == 2:
                    ids[stream.post("tools/call", {"name": "ticks", "arguments": {"count": TICKS,
                                                                                  "interval_ms": 20}})] = "ticks"
            pending = set(ids)
            while pending:
                msg = stream.next_event().json()
                received.append(msg)
                if msg.get("id") in pending and ("result" in msg or "error" in msg):
                    pending.discard(msg["id"])
            out[user] = {"ids": ids, "received": received}
        finally:
            stream.close()


def _run_streamable_user(base_url, ca_file, user, barrier, out):
    with httpx.Client(verify=ssl_context(ca_file), timeout=30) as client:
        u = StreamableUser(client, f"{base_url}/mcp")
        u.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": f"user{user}", "version": "1"}})
        u.notify("notifications/initialized")
        u.received.clear()
        barrier.wait(30)
        ids = {}
        try:
            for k in range(1, CALLS + 1):
                ids[u.request("tools/call", {"name": "echo", "arguments": {"text": f"user{user}-call{k}"}})] = k
                if k == 2:
                    ids[u.request("tools/call", {"name": "ticks", "arguments": {"count": TICKS,
                                                                                "interval_ms": 20}})] = "ticks"
            out[user] = {"ids": ids, "received": list(u.received)}
        finally:
            u.close()


def _check_each_user_got_only_its_own(out, users):
    assert sorted(out) == list(range(users)), f"users that finished: {sorted(out)}"
    for user, got in out.items():
        text = json.dumps(got["received"])
        for other in range(users):
            if other != user:
                assert f"user{other}-" not in text, f"user{user} received user{other}'s messages"
        results = {m["id"]: m for m in got["received"] if "id" in m and ("result" in m or "error" in m)}
        assert sorted(results) == sorted(got["ids"]), (user, sorted(results), sorted(got["ids"]))
        for msg_id, k in got["ids"].items():
            content = results[msg_id]["result"]["content"][0]["text"]
            if k == "ticks":
                assert content == f"sent {TICKS} ticks"
            else:
                assert content == f"user{user}-call{k}", (user, msg_id, content)
        ticks = [m for m in got["received"] if m.get("method") == "notifications/message"]
        seqs = sorted(m["params"]["data"]["seq"] for m in ticks)
        assert seqs == list(range(1, TICKS + 1)), f"user{user}: tick notifications {seqs}"


@pytest.mark.parametrize("users", [2, 10])
@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
@pytest.mark.parametrize("group", ["ubuntu", "synology"])
def test_concurrent_users_with_colliding_ids_get_only_their_own_messages(roomy, group, transport, users):
    t, ca_file = target(group)
    run = _run_sse_user if transport == "sse" else _run_streamable_user
    out, errors, barrier = {}, [], threading.Barrier(users)

    def user_thread(u):
        try:
            run(t.url, ca_file, u, barrier, out)
        except Exception as exc:  # noqa: BLE001 - reported below, with the user
            errors.append(f"user{u}: {exc!r}")
            barrier.abort()

    threads = [threading.Thread(target=user_thread, args=(u,), daemon=True) for u in range(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert not errors, errors
    _check_each_user_got_only_its_own(out, users)


async def _sdk_user(url, ca_file, transport, user):
    factory = client_factory(ca_file)
    opener = (sse_client(f"{url}/sse", httpx_client_factory=factory) if transport == "sse"
              else streamablehttp_client(f"{url}/mcp", httpx_client_factory=factory))
    async with opener as streams:
        async with ClientSession(*streams[:2]) as session:
            await session.initialize()
            texts = []
            for k in range(3):
                res = await session.call_tool("echo", {"text": f"sdk-user{user}-{k}"})
                texts.append(res.content[0].text)
            return texts


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
@pytest.mark.parametrize("group", ["ubuntu", "synology"])
def test_ten_official_sdk_clients_at_once_each_get_their_own_results(roomy, group, transport):
    t, ca_file = target(group)

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(_sdk_user(t.url, ca_file, transport, u) for u in range(10))), 120)

    results = asyncio.run(main())
    assert results == [[f"sdk-user{u}-{k}" for k in range(3)] for u in range(10)]


def test_each_session_is_a_process_of_its_own(roomy):
    """On the Ubuntu host, every open session is its own child of the gateway."""
    t, ca_file = target("ubuntu")
    unit = "mcp-edge-gateway-default.service"
    with sync_client(ca_file, timeout=30, read_timeout=30) as client:
        streams = [SseStream(client, t.url).open() for _ in range(3)]
        try:
            for s in streams:
                s.initialize()
            children = bench.target_exec(t, "sh", "-c", f"ps -o comm= --ppid $(systemctl show -p MainPID --value {unit})")
            pids = children.split()
            assert pids.count("node") >= 3, pids
        finally:
            for s in streams:
                s.close()
