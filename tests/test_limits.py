"""One client cannot exhaust the host: sessions are capped, memory is bounded.

With the default settings (4 sessions per client address, 16 in all, the gateway
unit's MemoryMax 1G), one client opens 150 Streamable HTTP sessions and never
closes one, the way clients that send no DELETE do on every reconnect. Meanwhile
/health must stay 200, another client's session must keep working, and the
gateway's unit must stay under 1 GiB.
"""

import json
import threading
import time

import httpx
import pytest

import sandbox as bench
from mcpedge.verify import ssl_context

pytestmark = pytest.mark.usefixtures("deployed")

UNIT = "mcp-edge-gateway-default.service"
SOCKET = "/run/mcp-edge/gateway-default.sock"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}

# A second client, on the host itself (another client address: 127.0.0.1), through nginx.
INSIDE = r"""
import json, ssl, sys, http.client
ctx = ssl._create_unverified_context()
def post(body, sid=None):
    c = http.client.HTTPSConnection("127.0.0.1", 443, context=ctx, timeout=20)
    h = {"Host": sys.argv[1], "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
         "MCP-Protocol-Version": "2025-06-18"}
    if sid:
        h["Mcp-Session-Id"] = sid
    c.request("POST", "/mcp", json.dumps(body), h)
    r = c.getresponse()
    return r.status, r.getheader("Mcp-Session-Id"), r.read().decode()
if sys.argv[2] == "open":
    st, sid, _ = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                       "capabilities": {}, "clientInfo": {"name": "inside", "version": "1"}}})
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    print(st, sid)
else:
    st, _, body = post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sys.argv[3])
    print(st, "echo" in body)
"""

STATUS = r"""
import json, socket
s = socket.socket(socket.AF_UNIX); s.connect("%s")
s.sendall(b"GET /status HTTP/1.0\r\nHost: gw\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode())
""" % SOCKET


def gateway_status(t):
    return json.loads(bench.target_exec(t, "python3", "-c", STATUS))


def unit_memory(t, prop):
    value = bench.target_exec(t, "systemctl", "show", "-p", prop, "--value", UNIT).strip()
    return int(value) if value.isdigit() else None


def test_flood_of_initializes_from_one_client_is_bounded(ubuntu, ca_file):
    t = ubuntu
    before = gateway_status(t)
    limits = before["limits"]
    assert (limits["max_per_client"], limits["max_total"]) == (4, 16), "the defaults are what is tested"
    st, inside_sid = bench.target_exec(t, "python3", "-c", INSIDE, t.domain, "open").split()
    assert st == "200"

    health, stop = [], threading.Event()

    def poll_health():
        with httpx.Client(verify=ssl_context(ca_file), timeout=10) as c:
            while not stop.is_set():
                health.append(c.get(f"{t.url}/health").status_code)
                time.sleep(0.2)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    statuses, sids, peak_sessions = [], [], 0
    try:
        with httpx.Client(verify=ssl_context(ca_file), timeout=20) as c:
            for i in range(150):  # bounded; paced under the per-address POST limit (20 r/s)
                r = c.post(f"{t.url}/mcp", json=INIT, headers=ACCEPT)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    sids.append(r.headers["mcp-session-id"])
                if i % 25 == 0:
                    peak_sessions = max(peak_sessions, gateway_status(t)["sessions"]["total"])
                time.sleep(0.06)
    finally:
        stop.set()
        poller.join(30)

    after = gateway_status(t)
    print(f"\nflood: {statuses.count(200)} x 200, {statuses.count(429)} x 429, {statuses.count(503)} x 503; "
          f"sessions now {after['sessions']['total']}, evicted {after['counters']['evicted'] - before['counters']['evicted']}")
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 100, "each new session evicts the client's least recently used one"
    assert after["sessions"]["total"] <= 4 + 1 and peak_sessions <= 4 + 1, (after, peak_sessions)
    assert after["counters"]["evicted"] - before["counters"]["evicted"] >= 100
    assert health and set(health) == {200}, health
    # The other client's session was never touched.
    assert bench.target_exec(t, "python3", "-c", INSIDE, t.domain, "list", inside_sid).split() == ["200", "True"]
    # An evicted session is a 404: its client re-initializes, as the spec intends.
    with httpx.Client(verify=ssl_context(ca_file), timeout=20) as c:
        r = c.post(f"{t.url}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   headers={**ACCEPT, "Mcp-Session-Id": sids[0], "MCP-Protocol-Version": "2025-06-18"})
        assert r.status_code == 404 and r.json()["error"]["message"] == "Session not found"
    current, peak = unit_memory(t, "MemoryCurrent"), unit_memory(t, "MemoryPeak")
    print(f"gateway unit memory: now {current / 2**20:.0f} MiB, peak {(peak or 0) / 2**20:.0f} MiB")
    assert current < 1 << 30 and (peak is None or peak < 1 << 30)


def test_unit_bounds_memory_and_tasks(ubuntu):
    out = bench.target_exec(ubuntu, "systemctl", "show", "-p", "MemoryMax", "-p", "TasksMax", "-p", "OOMPolicy", UNIT)
    props = dict(line.split("=", 1) for line in out.split())
    assert props == {"MemoryMax": str(1 << 30), "TasksMax": "512", "OOMPolicy": "continue"}, props
