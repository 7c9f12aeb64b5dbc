"""The Synology NAS target end to end, on the bench's DSM simulator.

loop-api and loop-mcp run as real containers (built on the "NAS" through
Container Manager's docker CLI), DSM's nginx serves them, the official MCP
Python SDK connects over HTTPS. The simulated DSM behaviours (regeneration of
server.ReverseProxy.conf, synosystemctl, Task Scheduler) cite dsm.md in
sandbox/images/dsm.
"""

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

import sandbox as bench
from mcpedge.verify import SseStream, check_sse, check_streamable, event_delays, ssl_context, sync_client

pytestmark = pytest.mark.usefixtures("deployed")

CA = str(bench.STATE / "ca" / "ca.pem")  # DSM serves its own certificate (bench CA)


@pytest.fixture(scope="module")
def nas():
    return bench.TARGETS["synology"]


def legacy_url():
    return f"https://{bench.LEGACY_DOMAIN}"


def container_started_at(name):
    return bench.run("docker", "inspect", "-f", "{{.State.StartedAt}}", name).strip()


def settings():
    return bench.settings_dict()["synology"]


def test_nas_converges_then_reports_no_change(deployed):
    first, second = deployed["first"], deployed["second"]
    assert any(name.startswith("NAS containers |") for name in first["changed"])
    assert any(name.startswith("NAS nginx and guard |") for name in first["changed"])
    assert not [n for n in second["changed"] if n.startswith("NAS")], second["changed"]


def test_mcp_sdk_through_dsm_nginx(nas):
    sse = asyncio.run(check_sse(nas.url, CA))
    http = asyncio.run(check_streamable(nas.url, CA))
    for res in (sse, http):
        assert res["server"] == "loop-mcp"
        assert {"echo", "ticks", "vault_list"} <= set(res["tools"])
        assert res["echo"] == "mcp-edge"
    assert http["session_id"]


def test_api_paths_go_to_loop_api(nas):
    r = httpx.get(f"{nas.url}/api/status", verify=ssl_context(CA))
    assert r.status_code == 200
    body = r.json()
    assert body["service"] == "loop-api" and body["tz"] == "Asia/Seoul"
    assert "welcome.md" in body["vault_entries"]  # /volume1 vault mounted
    # The app says what it runs on (X-Powered-By, Server: BaseHTTP/Python); the proxy says nothing.
    assert "x-powered-by" not in r.headers
    assert "python" not in r.headers.get("server", "").lower() and "/" not in r.headers.get("server", "")


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_gzip_client_gets_events_within_1s_through_dsm(nas, http2):
    res = event_delays(nas.url, CA, count=10, interval_ms=200, http2=http2)
    assert len(res["delays_ms"]) == 10
    assert max(res["delays_ms"]) < 1000, res["delays_ms"]


def test_idle_stream_through_dsm_survives_65s(nas):
    with sync_client(CA) as client:
        stream = SseStream(client, nas.url).open()
        try:
            stream.initialize()
            time.sleep(65)
            res = stream.wait_result(stream.post("tools/call", {"name": "echo", "arguments": {"text": "idle ok"}}))
            assert res["result"]["content"][0]["text"] == "idle ok"
        finally:
            stream.close()


def _patched_entry_streams():
    """Events through DSM's own (patched) reverse-proxy entry arrive promptly."""
    try:
        res = event_delays(legacy_url(), CA, count=3, interval_ms=100, timeout=4)
    except Exception:  # noqa: BLE001 - held events surface as a read timeout
        return False
    return len(res["delays_ms"]) == 3 and max(res["delays_ms"]) < 1000


def _wait_streaming(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _patched_entry_streams():
            return True
        time.sleep(2)
    return False


def _seconds_to_next_guard_run(nas):
    """When DSM's Task Scheduler (simulated by systemd timers) runs the guard next."""
    fmt = "%Y-%m-%d %H:%M:%S"
    for _ in range(30):
        line = bench.target_exec(nas, "systemctl", "list-timers", "--all", "--no-legend", "syno-task-*").split()
        # NEXT is "-" while the task runs (OnUnitActiveSec counts from its start)
        if len(line) > 2 and line[0] != "-":
            now = bench.target_exec(nas, "date", "-u", "+%Y-%m-%d %H:%M:%S").strip()
            return (datetime.strptime(f"{line[1]} {line[2]}", fmt) - datetime.strptime(now, fmt)).total_seconds()
        time.sleep(1)
    raise AssertionError(f"the guard's DSM task has no next run: {line}")


def test_patch_mode_survives_dsm_regeneration_via_guard_and_reapply(nas):
    assert _wait_streaming(10), "the patched DSM entry must stream"

    # DSM re-renders its reverse-proxy file (UI save / reboot / update): the patch is gone ...
    if _seconds_to_next_guard_run(nas) < 15:  # look while the guard is not about to run
        time.sleep(max(0, _seconds_to_next_guard_run(nas)) + 3)
    bench.dsm_regenerate(nas)
    assert not _patched_entry_streams(), "unpatched, DSM's entry holds events (gzip + buffering)"
    # ... and the guard, run by DSM's Task Scheduler every minute, puts it back.
    assert _wait_streaming(90), "the guard must restore the streaming settings within its interval (1 min)"

    # A re-apply restores them too (without waiting for the guard).
    bench.dsm_regenerate(nas)
    res = bench.apply(limit=nas.name)
    assert "NAS nginx and guard | DSM nginx files in place (validated, reloaded, rolled back on failure)" \
        in res["changed"]
    assert _wait_streaming(10)


def test_guard_restores_a_removed_managed_file(nas):
    bench.target_exec(nas, "rm", "-f", "/etc/nginx/conf.d/http.mcp-edge-site.conf")
    guard = f"{settings()['bundle_dir']}/bin/mcp-edge-guard {settings()['bundle_dir']}/guard.conf apply"
    out = bench.target_exec(nas, "sh", "-c", guard)
    assert "http.mcp-edge-site.conf" in out
    assert httpx.get(f"{nas.url}/health", verify=ssl_context(CA)).status_code == 200
    # Nothing out of place: the guard does nothing.
    assert bench.target_exec(nas, "sh", "-c", guard) == ""


def test_open_mcp_stream_survives_loop_api_redeploy(nas):
    mcp_name, api_name = settings()["loop_mcp"]["name"], settings()["loop_api"]["name"]
    mcp_started = container_started_at(mcp_name)
    api_started = container_started_at(api_name)
    version = Path(bench.VOLUME, "docker", "loop-api", "VERSION")
    with sync_client(CA) as client:
        stream = SseStream(client, nas.url).open()
        try:
            stream.initialize()
            version.write_text(f"{int(time.time())}\n")  # a new loop-api image
            res = bench.apply(limit=nas.name)
            assert res["rc"] == 0, res["log"][-3000:]
            assert any("loop-api" in name and "container" in name for name in res["changed"]), res["changed"]
            assert not any("loop-mcp" in name for name in res["changed"]), res["changed"]
            # The same stream still carries a tool call: it was never interrupted.
            reply = stream.wait_result(stream.post("tools/call", {"name": "echo", "arguments": {"text": "alive"}}))
            assert reply["result"]["content"][0]["text"] == "alive"
        finally:
            stream.close()
    assert container_started_at(mcp_name) == mcp_started, "loop-mcp must not be restarted"
    assert container_started_at(api_name) != api_started
    body = httpx.get(f"{nas.url}/api/status", verify=ssl_context(CA)).json()
    assert body["version"] == version.read_text().strip()


def test_dsm_entry_claiming_the_hostname_stops_the_deploy(nas):
    store = "/usr/syno/etc/www/ReverseProxy.json"
    original = bench.target_exec(nas, "cat", store)
    data = json.loads(original)
    data["0b5e1c2d-0000-4000-8000-000000000001"] = {
        "description": "someone's rule", "frontend": {"fqdn": nas.domain, "port": 443, "protocol": 1},
        "backend": {"fqdn": "localhost", "port": 5000, "protocol": 0}}
    bench.target_exec(nas, "sh", "-c", f"cat > {store}", input=json.dumps(data))
    try:
        res = bench.apply(limit=nas.name, check=False)
        assert res["rc"] != 0
        assert f"already serves {nas.domain}:443" in res["log"]
        assert "Resolve it" in res["log"] and "patch_entries" in res["log"]
    finally:
        bench.target_exec(nas, "sh", "-c", f"cat > {store}", input=original)
    assert bench.apply(limit=nas.name)["changed"] == []


def test_nas_operations_as_pyinfra_commands(nas):
    api = settings()["loop_api"]["name"]
    res = bench.pyinfra("--limit", nas.name, "--sudo", "--json", "fact", "mcpedge.facts.NasStatus",
                        f"services={api},{settings()['loop_mcp']['name']}")
    state = next(iter(json.loads(res.stdout).values()))[nas.name]  # {fact: {host: data}}
    assert state[api]["status"] == "running" and state[api]["health"] == "healthy"

    before = container_started_at(api)
    bench.pyinfra("--limit", nas.name, "-y", "mcpedge.nas.restart", f"service={api}")
    assert container_started_at(api) != before

    before = container_started_at(api)
    bench.pyinfra("--limit", nas.name, "-y", "mcpedge.nas.rebuild", f"service={api}")
    assert container_started_at(api) != before

    res = bench.pyinfra("--limit", nas.name, "--sudo", "--json", "fact", "mcpedge.facts.NasLogs",
                        f"service={api}", "lines=5")
    assert isinstance(next(iter(json.loads(res.stdout).values()))[nas.name], list)
    # Nothing the deploy manages changed: an apply has nothing to do once it is healthy again.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "healthy" not in bench.run(
            "docker", "inspect", "-f", "{{.State.Health.Status}}", api):
        time.sleep(1)
    assert bench.apply(limit=nas.name)["changed"] == []
