"""The Ubuntu/Debian gateway host, end to end, against a real bench target.

Clients are real: the official MCP Python SDK, httpx (HTTP/1.1 and HTTP/2)
and Python's ssl module, all verifying TLS against the bench ACME CA's root.
Destructive tests (kill, renew, broken settings) come last in this file.
"""

import asyncio
import json
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest
import yaml

import sandbox as bench
from mcpedge.verify import SseStream, check_sse, check_streamable, event_delays, ssl_context, sync_client

pytestmark = pytest.mark.usefixtures("deployed")

UNIT = "mcp-edge-gateway-default.service"
SOCKET = "/run/mcp-edge/gateway-default.sock"


def url(t, path=""):
    return f"{t.url}{path}"


def wait_for(check, timeout, what, interval=0.1):
    """Poll ``check`` until it returns something true (returned); fail naming ``what`` after ``timeout`` s."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last!r})")


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
    fact plan of the run before, mcpedge/pyinfra_compat/fact_cache.py), and a file edited by hand
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
        # Nothing says what runs behind the proxy, nor which nginx.
        assert "x-powered-by" not in r.headers and r.headers.get("server") == "nginx"
    assert missing.status_code == 404 and missing.json() == {"error": "not_found"}


def test_http_redirects_to_https_but_serves_acme_challenges(ubuntu, ca_file):
    r = httpx.get(f"http://{ubuntu.domain}/mcp?x=1")
    assert r.status_code == 308
    assert r.headers["location"] == f"https://{ubuntu.domain}/mcp?x=1"
    # A client given the http:// URL still gets its MCP POST through (a 301 would make it a GET).
    with httpx.Client(verify=ssl_context(ca_file), follow_redirects=True) as c:
        r = c.post(f"http://{ubuntu.domain}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 200 and r.url.scheme == "https"
    assert "mcp-session-id" in r.headers
    bench.target_exec(ubuntu, "sh", "-c",
                      "mkdir -p /var/www/mcp-edge-acme/.well-known/acme-challenge && "
                      "echo probe-token > /var/www/mcp-edge-acme/.well-known/acme-challenge/probe")
    r = httpx.get(f"http://{ubuntu.domain}/.well-known/acme-challenge/probe")
    assert r.status_code == 200 and r.text.strip() == "probe-token"


def test_gateway_is_reachable_only_through_nginx(ubuntu):
    """The gateway listens on no TCP port at all: its unix socket opens only for
    nginx's workers (www-data) and root, so no local user or service can go
    around nginx's gates, rate limits and logs."""
    assert bench.target_exec(ubuntu, "stat", "-c", "%a %U %G", SOCKET).split() == ["660", "root", "www-data"]
    tcp = bench.target_exec(ubuntu, "ss", "-ltnpH")
    assert "python3" not in tcp and "node" not in tcp, tcp
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
             f"s.connect({SOCKET!r}); s.sendall(b'GET /health HTTP/1.0\\r\\n\\r\\n'); print(s.recv(12).decode())")
    assert bench.target_exec(ubuntu, "python3", "-c", probe).startswith("HTTP/1.")  # root: yes
    refused = bench.target_exec(ubuntu, "runuser", "-u", "deploy", "--", "python3", "-c", probe, check=False)
    assert refused == "", refused  # another local user: no
    err = subprocess.run(["docker", "exec", "-u", "deploy", ubuntu.container, "python3", "-c", probe],
                         capture_output=True, text=True)
    assert err.returncode != 0 and "PermissionError" in err.stderr


def test_env_file_is_private_to_the_service_user(ubuntu):
    for path in ("/etc/mcp-edge/servers/default.env", "/etc/mcp-edge/servers/default.json"):
        assert bench.target_exec(ubuntu, "stat", "-c", "%a %U", path).split() == ["600", "mcp-gateway"]
    users = bench.target_exec(ubuntu, "ps", "-o", "uid=", "-C", "node").split()
    uid = bench.target_exec(ubuntu, "id", "-u", "mcp-gateway").strip()
    assert users and set(users) == {uid}, "the gateway and its stdio server run as the service user"


def test_audit_log_stays_json_when_a_client_sends_bytes_that_are_not_utf8(ubuntu, ca_file):
    """escape=json leaves bytes above 0x7f raw: what a client sends is logged as printable ASCII or not at all."""
    log = "/var/log/nginx/mcp-edge-access.json"
    before = int(bench.target_exec(ubuntu, "stat", "-c", "%s", log).strip())
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((ubuntu.public_ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=ubuntu.domain) as tls:
            tls.sendall(b"GET /health%93?sessionid=\x93 HTTP/1.1\r\nHost: " + ubuntu.domain.encode()
                        + b"\r\nUser-Agent: quote\x93me\r\nConnection: close\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 ")
    deadline, lines = time.monotonic() + 10, []
    while time.monotonic() < deadline and not any("quote" in line or "(not printable" in line for line in lines):
        lines = bench.target_exec(ubuntu, "tail", "-c", f"+{before + 1}", log).splitlines()  # UTF-8 or raises
        time.sleep(0.2)
    entries = [json.loads(line) for line in lines]
    mine = [e for e in entries if e["user_agent"] == "(not printable ASCII)"]
    assert mine and mine[0]["uri"] == "(not printable ASCII)", entries


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
            # nginx's new workers take over a moment after the reload returns: wait for it, with a deadline.
            after = wait_for(lambda: (_served_cert(ubuntu, ca_file)["serialNumber"] != before)
                             and _served_cert(ubuntu, ca_file)["serialNumber"], 15,
                             "the deploy hook to reload nginx onto the new certificate")
            assert after != before
            res = stream.wait_result(stream.post("tools/call", {"name": "echo", "arguments": {"text": "survived"}}))
            assert res["result"]["content"][0]["text"] == "survived"
        finally:
            stream.close()


# --- Faults ---------------------------------------------------------------------------

def test_killed_gateway_comes_back_and_requests_wait_for_it(ubuntu, ca_file):
    """SIGKILL: systemd restarts the gateway; its socket stays open meanwhile, so
    requests wait (a moment) instead of failing. Every answer is 200, or the
    JSON 503 of a gateway that does not answer."""
    pid = bench.target_exec(ubuntu, "systemctl", "show", "-p", "MainPID", "--value", UNIT).strip()
    bench.target_exec(ubuntu, "systemctl", "kill", "-s", "KILL", UNIT)
    seen = []
    with httpx.Client(verify=ssl_context(ca_file), timeout=10) as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = c.get(url(ubuntu, "/health"))
            seen.append(r.status_code)
            assert r.status_code == 200 or (r.status_code == 503 and r.json()["status"] == "down"), r.text
            new_pid = bench.target_exec(ubuntu, "systemctl", "show", "-p", "MainPID", "--value", UNIT).strip()
            if r.status_code == 200 and new_pid not in ("0", pid):
                break
            time.sleep(0.05)
    assert seen[-1] == 200 and new_pid not in ("0", pid), (seen, pid, new_pid)


def test_stopped_gateway_is_a_503_json_then_comes_back(ubuntu, ca_file):
    sock = UNIT.replace(".service", ".socket")
    bench.target_exec(ubuntu, "systemctl", "stop", sock, UNIT)
    try:
        r = wait_for(lambda: (r := httpx.get(url(ubuntu, "/health"), verify=ssl_context(ca_file), timeout=5))
                     .status_code == 503 and r, 10, "/health to say 503 while the gateway is stopped")
        assert r.json()["status"] == "down" and r.headers["content-type"].startswith("application/json")
    finally:
        bench.target_exec(ubuntu, "systemctl", "start", sock, UNIT)
    wait_for(lambda: httpx.get(url(ubuntu, "/health"), verify=ssl_context(ca_file), timeout=5).status_code == 200,
             20, "/health to come back")


def test_change_that_fails_nginx_validation_is_rolled_back_and_nginx_keeps_serving(ubuntu, ca_file):
    """Every setting is validated before any host is contacted, so what can still fail
    `nginx -t` is the host itself: here a file nginx's own config includes has gone
    missing while a settings change is applied. The change is not half-applied: the
    previous files are put back and nginx, never reloaded, keeps serving them."""
    files = "/etc/nginx/snippets/mcp-edge/security-headers.conf /etc/nginx/conf.d/mcp-edge-http.conf"
    sums_before = bench.target_exec(ubuntu, "sh", "-c", f"sha1sum {files}")
    changed = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    changed["ubuntu"]["nginx"]["hsts_max_age"] = 600  # the rest as the bench has it
    path = bench.write_settings(changed, name="settings-hsts-600.yaml")
    bench.target_exec(ubuntu, "mv", "/etc/nginx/mime.types", "/etc/nginx/mime.types.away")

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
        bench.target_exec(ubuntu, "mv", "/etc/nginx/mime.types.away", "/etc/nginx/mime.types")
    assert res["rc"] != 0
    assert "nginx -t failed" in res["log"]
    assert failures == [], failures
    assert bench.target_exec(ubuntu, "sh", "-c", f"sha1sum {files}") == sums_before
    # The good settings converge with nothing to change: the restore was exact.
    assert bench.apply()["changed"] == []


def test_a_host_of_the_supergateway_release_is_cleaned_up(ubuntu, ca_file):
    """A host deployed by the earlier release (Supergateway instances mcp-edge-gateway@sse
    and @http-1): the apply stops and removes them; the next apply changes nothing."""
    legacy = ("[Unit]\nDescription=old gateway %i\n[Service]\nExecStart=/bin/sleep infinity\n"
              "[Install]\nWantedBy=multi-user.target\n")
    bench.target_exec(ubuntu, "sh", "-c", "cat > /etc/systemd/system/mcp-edge-gateway@.service && "
                      "for i in sse http-1; do echo MCP_PORT=0 > /etc/mcp-edge/gateway-$i.env; done && "
                      "echo MCP_STDIO_COMMAND=x > /etc/mcp-edge/gateway.env && systemctl daemon-reload && "
                      "systemctl enable --now mcp-edge-gateway@sse mcp-edge-gateway@http-1", input=legacy)
    res = bench.apply(limit=ubuntu.name)
    assert res["rc"] == 0, res["log"][-3000:]
    assert "MCP gateway | Stop the old Supergateway instance sse" in res["changed"]
    for i in ("sse", "http-1"):
        state = bench.target_exec(ubuntu, "systemctl", "is-active", f"mcp-edge-gateway@{i}", check=False).strip()
        assert state in ("inactive", "failed")
    left = bench.target_exec(ubuntu, "sh", "-c", "ls /etc/mcp-edge/gateway*.env /etc/systemd/system/mcp-edge-gateway@.service "
                             "2>/dev/null || true")
    assert left.strip() == "", left
    assert asyncio.run(check_streamable(ubuntu.url, ca_file))["echo"] == "mcp-edge"
    assert bench.apply(limit=ubuntu.name)["changed"] == []
