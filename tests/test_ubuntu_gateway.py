"""The Ubuntu/Debian gateway host, end to end, against a real bench target.

Clients are real: the official MCP Python SDK, httpx (HTTP/1.1 and HTTP/2)
and Python's ssl module, all verifying TLS against the bench ACME CA's root.
Destructive tests (kill, renew, broken settings) come last in this file.
"""

import asyncio
import json
import socket
import ssl
import threading
import time

import httpx
import pytest
import yaml

from mcpedge.verify import SseStream, check_sse, check_streamable, event_delays, ssl_context, sync_client
from tests import bench

pytestmark = pytest.mark.usefixtures("deployed")


def url(t, path=""):
    return f"{t.url}{path}"


# --- Apply ----------------------------------------------------------------------

def test_fresh_apply_succeeds_and_second_apply_changes_nothing(deployed):
    first, second = deployed["first"], deployed["second"]
    assert first["rc"] == 0, first["log"][-3000:]
    assert first["changed"], "a bare host must be changed by the first apply"
    assert second["rc"] == 0, second["log"][-3000:]
    assert second["changed"] == [], f"second apply changed: {second['changed']}"
    assert second["results"]["totals"]["success"] == 0


def test_no_op_apply_reads_the_host_in_one_command_and_still_sees_a_hand_edit(ubuntu):
    """A converged host answers the whole no-op re-apply with one sudo command (the
    fact plan of the run before, mcpedge/fact_cache.py), and a file edited by hand
    since is still seen and repaired."""
    def sudo_commands_since(mark):
        log = bench.target_exec(ubuntu, "journalctl", "--no-pager", "-o", "cat", "_COMM=sudo", "--since", mark)
        return [line for line in log.splitlines() if "COMMAND=" in line and "(command continued)" not in line]

    mark = bench.target_exec(ubuntu, "date", "+%Y-%m-%d %H:%M:%S").strip()
    time.sleep(1)  # journalctl --since has one-second resolution
    noop = bench.apply()
    assert noop["changed"] == []
    assert len(sudo_commands_since(mark)) == 1, sudo_commands_since(mark)

    snippet = "/etc/nginx/snippets/mcp-edge/security-headers.conf"
    bench.target_exec(ubuntu, "sh", "-c", f"echo '# hand edit' >> {snippet}")
    repaired = bench.apply()
    assert any(snippet.rsplit("/", 1)[1] in name for name in repaired["changed"]), repaired["changed"]
    assert "# hand edit" not in bench.target_exec(ubuntu, "cat", snippet)
    assert bench.apply()["changed"] == []


# --- MCP through the proxy, official SDK --------------------------------------------

def test_mcp_sdk_over_sse(ubuntu, ca_file):
    res = asyncio.run(check_sse(ubuntu.url, ca_file))
    assert res["server"] == "mcp-demo"
    assert {"echo", "add", "ticks"} <= set(res["tools"])
    assert res["echo"] == "mcp-edge"


def test_mcp_sdk_over_streamable_http(ubuntu, ca_file):
    res = asyncio.run(check_streamable(ubuntu.url, ca_file))
    assert res["session_id"], "the session id must come back through the proxy"
    assert {"echo", "add", "ticks"} <= set(res["tools"])
    assert res["echo"] == "mcp-edge"


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_gzip_client_gets_every_event_within_1s(ubuntu, ca_file, http2):
    res = event_delays(ubuntu.url, ca_file, count=15, interval_ms=200, http2=http2)
    assert res["http_version"] == ("HTTP/2" if http2 else "HTTP/1.1")
    assert len(res["delays_ms"]) == 15, "every event must arrive"
    assert max(res["delays_ms"]) < 1000, res["delays_ms"]
    assert res["content_encoding"] is None, "event streams must not be compressed"


def test_idle_sse_stream_survives_65s(ubuntu, ca_file):
    """nginx's default proxy_read_timeout is 60 s; the stream must outlive it."""
    with sync_client(ca_file) as client:
        stream = SseStream(client, ubuntu.url).open()
        try:
            stream.initialize()
            time.sleep(65)  # nothing is sent either way meanwhile
            res = stream.wait_result(stream.post("tools/call", {"name": "echo", "arguments": {"text": "still here"}}))
            assert res["result"]["content"][0]["text"] == "still here"
        finally:
            stream.close()


def test_streamable_http_get_stream_and_session_headers(ubuntu, ca_file):
    """Mcp-Session-Id comes back, the GET stream opens, an unknown session is a 404 (not rewritten)."""
    with httpx.Client(verify=ssl_context(ca_file)) as c:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        hdrs = {"Accept": "application/json, text/event-stream"}
        r = c.post(url(ubuntu, "/mcp"), json=init, headers=hdrs)
        assert r.status_code == 200
        sid = r.headers["mcp-session-id"]
        common = {**hdrs, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
        c.post(url(ubuntu, "/mcp"), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=common)
        with c.stream("GET", url(ubuntu, "/mcp"), headers={**common, "Accept": "text/event-stream"},
                      timeout=httpx.Timeout(5, read=2)) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
        r = c.post(url(ubuntu, "/mcp"), json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   headers={**hdrs, "Mcp-Session-Id": "00000000-0000-0000-0000-000000000000"})
        assert r.status_code == 404, "the upstream's 404 (re-initialize) must pass untouched"
        assert r.json()["error"]["message"] == "Session not found"  # the gateway's body, not nginx's


# --- Edge behaviour -------------------------------------------------------------

def test_burst_beyond_rate_limit_gets_429_json(ubuntu, ca_file):
    statuses, bodies = [], []
    with httpx.Client(verify=ssl_context(ca_file)) as c:
        for _ in range(120):  # bounded burst: well above rate + burst
            r = c.post(url(ubuntu, "/message?sessionId=burst-test"), json={"jsonrpc": "2.0", "method": "ping"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                bodies.append((r.headers.get("content-type"), r.text))
    assert 429 in statuses, statuses
    ctype, body = bodies[0]
    assert ctype.startswith("application/json")
    assert json.loads(body)["error"] == "rate_limited"


def test_metrics_only_from_allow_list(ubuntu, ca_file):
    r = httpx.get(url(ubuntu, "/metrics"), verify=ssl_context(ca_file))
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden"}
    # From the host itself (127.0.0.1 is on the default allow-list).
    inside = bench.target_exec(ubuntu, "python3", "-c", (
        "import ssl, urllib.request; c = ssl._create_unverified_context(); "
        f"r = urllib.request.Request('https://127.0.0.1/metrics', headers={{'Host': '{ubuntu.domain}'}}); "
        "print(urllib.request.urlopen(r, context=c).read().decode())"))
    assert "Active connections" in inside


def _handshake(t, ca_file, version):
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection((t.public_ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=t.domain) as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_refused_1_2_and_1_3_accepted(ubuntu, ca_file):
    assert _handshake(ubuntu, ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(ubuntu, ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the server's refusal
        _handshake(ubuntu, ca_file, ssl.TLSVersion.TLSv1_1)


def test_security_headers_on_mcp_and_error_responses(ubuntu, ca_file):
    with httpx.Client(verify=ssl_context(ca_file)) as c:
        mcp = c.post(url(ubuntu, "/mcp"), json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            headers={"Accept": "application/json, text/event-stream"})
        missing = c.get(url(ubuntu, "/nope"))
    for r in (mcp, missing):
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")
        assert r.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404 and missing.json() == {"error": "not_found"}


def test_http_redirects_to_https_but_serves_acme_challenges(ubuntu):
    r = httpx.get(f"http://{ubuntu.domain}/mcp?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{ubuntu.domain}/mcp?x=1"
    bench.target_exec(ubuntu, "sh", "-c",
                      "mkdir -p /var/www/mcp-edge-acme/.well-known/acme-challenge && "
                      "echo probe-token > /var/www/mcp-edge-acme/.well-known/acme-challenge/probe")
    r = httpx.get(f"http://{ubuntu.domain}/.well-known/acme-challenge/probe")
    assert r.status_code == 200 and r.text.strip() == "probe-token"


def test_gateway_listens_on_loopback_only(ubuntu):
    out = bench.target_exec(ubuntu, "ss", "-ltnH")
    ports = {8001: None, 8011: None}
    for line in out.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if int(port) in ports:
            ports[int(port)] = host
    assert ports == {8001: "127.0.0.1", 8011: "127.0.0.1"}


def test_env_file_is_private_to_the_service_user(ubuntu):
    out = bench.target_exec(ubuntu, "stat", "-c", "%a %U", "/etc/mcp-edge/gateway.env")
    assert out.split() == ["600", "mcp-gateway"]
    users = bench.target_exec(ubuntu, "ps", "-o", "uid=", "-C", "node").split()
    uid = bench.target_exec(ubuntu, "id", "-u", "mcp-gateway").strip()
    assert users and set(users) == {uid}, "the gateway and its stdio server run as the service user"


# --- Certificates -----------------------------------------------------------------

def _served_cert(t, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((t.public_ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=t.domain) as tls:
            return tls.getpeercert()


def test_certificate_issued_by_pebble(ubuntu, ca_file):
    cert = _served_cert(ubuntu, ca_file)  # verified against Pebble's root
    issuer = dict(x[0] for x in cert["issuer"])
    assert "Pebble" in issuer["commonName"]
    assert ("DNS", ubuntu.domain) in cert["subjectAltName"]


def test_forced_renewal_reloads_nginx_and_open_stream_survives(ubuntu, ca_file):
    before = _served_cert(ubuntu, ca_file)["serialNumber"]
    with sync_client(ca_file) as client:
        stream = SseStream(client, ubuntu.url).open()
        try:
            stream.initialize()
            bench.target_exec(ubuntu, "env", "REQUESTS_CA_BUNDLE=/etc/mcp-edge/acme-ca.pem", "certbot", "renew",
                              "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive")
            after = _served_cert(ubuntu, ca_file)["serialNumber"]
            assert after != before, "the deploy hook must reload nginx onto the new certificate"
            res = stream.wait_result(stream.post("tools/call", {"name": "echo", "arguments": {"text": "survived"}}))
            assert res["result"]["content"][0]["text"] == "survived"
        finally:
            stream.close()


# --- Faults ---------------------------------------------------------------------------

def test_killed_gateway_comes_back_and_health_is_503_json_meanwhile(ubuntu, ca_file):
    unit = "mcp-edge-gateway@http-1.service"
    pid = bench.target_exec(ubuntu, "systemctl", "show", "-p", "MainPID", "--value", unit).strip()
    bench.target_exec(ubuntu, "systemctl", "kill", "-s", "KILL", unit)
    seen = []
    deadline = time.monotonic() + 20
    with httpx.Client(verify=ssl_context(ca_file), timeout=5) as c:
        while time.monotonic() < deadline:
            r = c.get(url(ubuntu, "/health"))
            seen.append(r.status_code)
            if r.status_code == 503:
                assert r.json()["status"] == "down"
            if r.status_code == 200 and 503 in seen:
                break
            time.sleep(0.05)
    assert 503 in seen, "health must say 503 while the gateway is down"
    assert seen[-1] == 200, "systemd must bring the gateway back"
    new_pid = bench.target_exec(ubuntu, "systemctl", "show", "-p", "MainPID", "--value", unit).strip()
    assert new_pid not in ("0", pid)


def test_setting_that_breaks_nginx_is_rolled_back_and_nginx_keeps_serving(ubuntu, ca_file):
    files = "/etc/nginx/sites-available/mcp-edge-site.conf /etc/nginx/conf.d/mcp-edge-http.conf"
    sums_before = bench.target_exec(ubuntu, "sh", "-c", f"sha1sum {files}")
    broken = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    # Passes the schema, but nginx cannot parse the size (offset overflow).
    broken["ubuntu"]["nginx"]["client_max_body_size"] = "99999999999999999999g"  # the rest as the bench has it
    path = bench.write_settings(broken, name="settings-broken.yaml")

    failures, stop = [], threading.Event()

    def poll():
        with httpx.Client(verify=ssl_context(ca_file), timeout=5) as c:
            while not stop.is_set():
                try:
                    if c.get(url(ubuntu, "/health")).status_code != 200:
                        failures.append("status")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        res = bench.apply(settings=path, check=False)
    finally:
        stop.set()
        poller.join()
    assert res["rc"] != 0
    assert "nginx -t failed" in res["log"]
    assert failures == [], failures
    assert bench.target_exec(ubuntu, "sh", "-c", f"sha1sum {files}") == sums_before
    # The good settings converge with nothing to change: the restore was exact.
    assert bench.apply()["changed"] == []


def test_more_gateway_instances_then_fewer(ubuntu, ca_file):
    """Two Streamable HTTP instances behind the pool (sessions stick to one), then
    back to one: the removed instance is stopped and its settings removed."""
    two = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    two["ubuntu"]["supergateway"]["http_instances"] = 2
    res = bench.apply(settings=bench.write_settings(two, name="settings-two-instances.yaml"))
    assert "Supergateway | Gateway http-2 running and enabled" in res["changed"]
    assert bench.target_exec(ubuntu, "systemctl", "is-active", "mcp-edge-gateway@http-2").strip() == "active"
    for _ in range(3):  # each session works end to end through the pool
        assert asyncio.run(check_streamable(ubuntu.url, ca_file))["echo"] == "mcp-edge"

    res = bench.apply()
    assert "Supergateway | Stop removed gateway instance http-2" in res["changed"]
    state = bench.target_exec(ubuntu, "systemctl", "is-active", "mcp-edge-gateway@http-2", check=False).strip()
    assert state in ("inactive", "failed")
    assert bench.target_exec(ubuntu, "sh", "-c", "test -e /etc/mcp-edge/gateway-http-2.env && echo kept || echo gone"
                             ).strip() == "gone"
    assert asyncio.run(check_streamable(ubuntu.url, ca_file))["echo"] == "mcp-edge"
    assert bench.apply()["changed"] == []
