"""Hardening (#6): static checks, pre-flight refusals, access gates, faults, secrets.

Against the real bench targets, after the session's fresh apply (``deployed``).
Static checks come first; every test that applies a settings variant puts the
bench settings back (and asserts convergence) before it ends.
"""

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

import sandbox as bench
from mcpedge.verify import client_factory, ssl_context

pytestmark = pytest.mark.usefixtures("deployed")

NAS_CA = str(bench.STATE / "ca" / "ca.pem")

# gixy-next findings that are explained, per plugin: (targets it applies to, why).
GIXY_SKIPS = {
    "proxy_buffering_off": (
        {"ubuntu", "synology"},
        "MCP streams must not be buffered: a buffered event stream holds events until it closes "
        "(mcp-streaming.md §2, §7.2); slow clients are bounded by limit_conn and the rate limits instead."),
    "default_server_flag": (
        {"synology"},
        "DSM's nginx owns the default server on 443 (its portal); the bundle's server block is name-based "
        "and must not take the default away from DSM."),
    "worker_rlimit_nofile_vs_connections": (
        {"synology"},
        "DSM owns nginx's main config (workers, events); the bundle only adds http-level files."),
    "host_spoofing": (
        {"synology"},
        "Only in DSM's own reverse-proxy entry (rendered by DSM's template with Host $http_host, which patch "
        "mode leaves alone); the bundle's server blocks send Host $host (asserted below)."),
}


def settings_variant(name, edit):
    data = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    edit(data)
    return bench.write_settings(data, name=name)


def served_cert_der(t, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((t.public_ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=t.domain) as tls:
            return tls.getpeercert(binary_form=True)


class Poller:
    """GETs a URL every 50 ms in a thread (bounded by stop()); records failures with times."""

    def __init__(self, url, ca_file, ok=lambda r: r.status_code == 200):
        self.url, self.ca_file, self.ok = url, ca_file, ok
        self.results, self.stop_event = [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(verify=ssl_context(self.ca_file), timeout=5) as c:
            while not self.stop_event.is_set():
                try:
                    r = c.get(self.url)
                    self.results.append((time.monotonic(), self.ok(r), r.status_code, r.text[:200]))
                except httpx.HTTPError as exc:
                    self.results.append((time.monotonic(), False, None, repr(exc)))
                time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(30)

    @property
    def failures(self):
        return [r for r in self.results if not r[1]]


# --- Static checks -----------------------------------------------------------------------

@pytest.mark.parametrize("group", ["ubuntu", "synology"])
def test_gixy_finds_nothing_unexplained_in_the_rendered_nginx_config(group, tmp_path):
    t = bench.TARGETS[group]
    dump = tmp_path / "nginx-T.conf"
    dump.write_text(bench.target_exec(t, "sh", "-c", "PATH=$PATH:/usr/sbin nginx -T 2>/dev/null"))
    res = subprocess.run([str(bench.ROOT / ".venv" / "bin" / "gixy"), "-f", "json", str(dump)],
                         capture_output=True, text=True)
    findings = json.loads(res.stdout or "[]")
    unexplained, skipped = [], []
    for f in findings:
        targets, reason = GIXY_SKIPS.get(f["plugin"], (set(), ""))
        if group in targets:
            skipped.append(f"{f['plugin']}: {reason}")
            if f["plugin"] == "host_spoofing":
                assert t.domain not in f["config"], f"the bundle's own server block spoofs Host: {f['config']}"
        else:
            unexplained.append(f"{f['plugin']} ({f['severity']}): {f['reason']}\n{f['config']}")
    print(f"\ngixy on {group}: {len(findings)} findings, {len(skipped)} explained by the skip list")
    assert not unexplained, "\n\n".join(unexplained)


def test_gateway_unit_exposure_at_most_2_and_verify_clean(ubuntu):
    unit = "mcp-edge-gateway-default.service"
    out = bench.target_exec(ubuntu, "systemd-analyze", "security", "--no-pager", unit)
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    print(f"\nsystemd-analyze security {unit}: exposure {exposure}")
    assert exposure <= 2.0, out
    verify = subprocess.run(["docker", "exec", ubuntu.container, "systemd-analyze", "verify", unit],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stdout.strip() and not verify.stderr.strip(), \
        verify.stdout + verify.stderr


# --- Pre-flight ------------------------------------------------------------------------------

def _start_listener(t, port, bind):
    """A stranger's service on a port (python3 http.server), started by this test; returns its PID."""
    return bench.target_exec(t, "sh", "-c", f"python3 -m http.server {port} --bind {bind} "
                             f">/dev/null 2>&1 & echo $!").strip()


def test_preflight_refuses_ports_held_by_another_process(ubuntu):
    """A stranger on port 80 of the Ubuntu host (nginx stopped for it), and on a loop
    port of the NAS: both hosts are refused, naming the port and the process."""
    nas = bench.TARGETS["synology"]
    bench.target_exec(ubuntu, "systemctl", "stop", "nginx")
    pids = {ubuntu: _start_listener(ubuntu, 80, "0.0.0.0"), nas: _start_listener(nas, 18082, "127.0.0.1")}

    def edit(d):
        d["synology"]["loop_api"]["host_port"] = 18082
        d["synology"]["publish_address"] = "127.0.0.1"

    path = settings_variant("settings-ports.yaml", edit)
    try:
        # One host at a time: pyinfra stops the whole run at the first failed operation.
        res = {t: bench.apply(settings=path, limit=t.name, check=False) for t in (ubuntu, nas)}
    finally:
        for t, pid in pids.items():
            bench.target_exec(t, "kill", pid, check=False)
        bench.target_exec(ubuntu, "sh", "-c", "while ss -ltnH 'sport = :80' | grep -q .; do sleep 0.1; done; "
                          "systemctl start nginx")
    assert "gw1: port 80 (nginx) is already taken by python3" in res[ubuntu]["log"], res[ubuntu]["log"][-3000:]
    api = bench.settings_dict()["synology"]["loop_api"]["name"]
    assert f"nas1: port 18082 (for {api}) is already taken by python3" in res[nas]["log"], res[nas]["log"][-3000:]
    for r in res.values():
        assert r["rc"] != 0
        assert r["changed"] == [], "nothing may change on a refused host"


def test_preflight_refuses_low_disk(ubuntu):
    def edit(d):
        d["ubuntu"]["preflight"] = {"min_free_disk": "100000g"}
        d["synology"]["preflight"] = {"min_free_disk": "100000g"}

    path = settings_variant("settings-disk.yaml", edit)
    nas = bench.TARGETS["synology"]
    res = {t: bench.apply(settings=path, limit=t.name, check=False) for t in (ubuntu, nas)}
    assert re.search(r"gw1: only [\d.]+ GiB free on /\S* \(holding /\); the deploy needs at least 100000\.0 GiB",
                     res[ubuntu]["log"]), res[ubuntu]["log"][-3000:]
    assert re.search(rf"nas1: only [\d.]+ GiB free on \S+ \(holding {bench.VOLUME}/mcp-edge\)", res[nas]["log"]), \
        res[nas]["log"][-3000:]
    for r in res.values():
        assert r["rc"] != 0 and r["changed"] == []


NAS_BREAKS = {  # what the NAS deploy assumes -> (break it, undo it, the refusal)
    "DSM 6": ("sed -i 's/^majorversion=\"7\"/majorversion=\"6\"/' /etc.defaults/VERSION",
              "sed -i 's/^majorversion=\"6\"/majorversion=\"7\"/' /etc.defaults/VERSION",
              "nas1: not DSM 7 or newer (/etc.defaults/VERSION: (6, 2))"),
    # (The simulator's docker CLI is a bind mount: the setting names a missing one instead.)
    "no docker CLI": ({"docker": "/var/packages/ContainerManager/target/usr/bin/no-docker"}, None,
                      "nas1: synology.docker '/var/packages/ContainerManager/target/usr/bin/no-docker' is not "
                      "an executable on the NAS"),
    "no nginx": ("mv /usr/sbin/nginx /root/nginx.off", "mv /root/nginx.off /usr/sbin/nginx",
                 "nas1: no nginx found: DSM's web server is what serves the MCP hostname"),
}


@pytest.mark.parametrize("case", list(NAS_BREAKS))
def test_nas_preflight_refuses_a_nas_the_deploy_does_not_fit(ubuntu, case):
    nas = bench.TARGETS["synology"]
    do, undo, refusal = NAS_BREAKS[case]
    if isinstance(do, dict):
        res = bench.apply(settings=settings_variant("settings-nas-break.yaml", lambda d: d["synology"].update(do)),
                          limit=nas.name, check=False)
    else:
        bench.target_exec(nas, "sh", "-c", do)
        try:
            res = bench.apply(limit=nas.name, check=False)
        finally:
            bench.target_exec(nas, "sh", "-c", undo)
    assert res["rc"] != 0
    assert refusal in res["log"], res["log"][-3000:]
    assert res["changed"] == [], "nothing may change on a refused host"


def test_preflight_refuses_when_sudo_does_not_work(ubuntu):
    wrong = bench.STATE / "wrong-sudo-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    def edit(d):
        d["ssh"]["sudo_password_file"] = str(wrong)

    res = bench.apply(settings=settings_variant("settings-sudo.yaml", edit), limit=ubuntu.name, check=False)
    assert res["rc"] != 0
    assert "gw1: sudo does not work for deploy" in res["log"], res["log"][-3000:]
    assert res["changed"] == []


# --- Access: bearer token, Origin check, IP allow-list ----------------------------------------

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


async def _sdk_with_headers(base_url, ca_file, headers):
    async with streamablehttp_client(f"{base_url}/mcp", headers=headers, timeout=10,
                                     httpx_client_factory=client_factory(ca_file)) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            echo = await session.call_tool("echo", {"text": "with token"})
            return sorted(t.name for t in tools.tools), echo.content[0].text


def test_bearer_token_gate_origin_check_and_ip_allow_list(ubuntu, ca_file, monkeypatch):
    token = secrets.token_urlsafe(32)
    monkeypatch.setenv("MCP_EDGE_TEST_TOKEN", token)

    def gated(d):
        d["ubuntu"]["nginx"]["access"] = {"bearer_tokens": ["env:MCP_EDGE_TEST_TOKEN"],
                                          "allowed_origins": ["https://claude.ai"]}

    res = bench.apply(settings=settings_variant("settings-token.yaml", gated), limit=ubuntu.name)
    assert res["rc"] == 0, res["log"][-3000:]
    # The deploy's own verification passed the gate: it sent the token (from its environment).
    assert f"verify {ubuntu.url}: ok  streamable-http: initialize + tools/list ok" in res["log"]
    assert token not in res["log"] and token not in json.dumps(res)
    mcp = f"{ubuntu.url}/mcp"
    with httpx.Client(verify=ssl_context(ca_file), timeout=10) as c:
        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": f"Basic {token}"}):
            r = c.post(mcp, json=INIT, headers={**ACCEPT, **headers})
            assert r.status_code == 401, (headers, r.status_code)
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["strict-transport-security"]  # security headers stay on the 401
        auth = {"Authorization": f"Bearer {token}"}
        r = c.post(mcp, json=INIT, headers={**ACCEPT, **auth, "Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json() == {"error": "forbidden"}
        r = c.post(mcp, json=INIT, headers={**ACCEPT, **auth, "Origin": "https://claude.ai"})
        assert r.status_code == 200 and r.headers["mcp-session-id"]
        assert c.get(f"{ubuntu.url}/health").status_code == 200  # status stays open, without a token
    tools, echo = asyncio.run(_sdk_with_headers(ubuntu.url, ca_file, {"Authorization": f"Bearer {token}"}))
    assert "echo" in tools and echo == "with token"
    # The tokens live only in a 0600 root file; no other nginx file or log holds them.
    assert bench.target_exec(ubuntu, "stat", "-c", "%a %U %G", "/etc/nginx/snippets/mcp-edge/access-tokens.conf") \
        .split() == ["600", "root", "root"]
    holders = bench.target_exec(ubuntu, "sh", "-c", "grep -rlF -f - /etc/nginx /var/log/nginx || true",
                                input=token + "\n").split()
    assert holders == ["/etc/nginx/snippets/mcp-edge/access-tokens.conf"], holders

    def allow_listed(d):
        d["ubuntu"]["nginx"]["access"] = {"allow": ["192.0.2.0/24"]}

    res = bench.apply(settings=settings_variant("settings-allow.yaml", allow_listed), limit=ubuntu.name)
    assert res["rc"] == 0, res["log"][-3000:]
    # This machine is not on the list: the verification says it skipped the MCP checks.
    assert f"verify {ubuntu.url}: SKIPPED MCP checks" in res["log"]
    assert f"verify {ubuntu.url}: ok  health: 200" in res["log"]
    with httpx.Client(verify=ssl_context(ca_file), timeout=10) as c:
        r = c.post(mcp, json=INIT, headers=ACCEPT)
        assert r.status_code == 403 and r.json() == {"error": "forbidden"}
        assert c.get(f"{ubuntu.url}/sse").status_code == 403
        assert c.get(f"{ubuntu.url}/health").status_code == 200

    res = bench.apply(limit=ubuntu.name)  # back to the bench settings: no gates
    assert res["rc"] == 0
    r = httpx.post(mcp, json=INIT, headers=ACCEPT, verify=ssl_context(ca_file))
    assert r.status_code == 200  # (convergence is asserted by the next test's final apply)


# --- Faults ------------------------------------------------------------------------------------

def test_certbot_failure_keeps_the_certificate_and_nginx_serving(ubuntu, ca_file):
    live = f"/etc/letsencrypt/live/{ubuntu.domain}/cert.pem"
    before_file = bench.target_exec(ubuntu, "sha256sum", "-b", live).split()[0]
    before_served = served_cert_der(ubuntu, ca_file)

    def dead_acme(d):
        d["ubuntu"]["acme"]["server"] = "https://acme.bench:14999/dir"  # nothing listens there

    with Poller(f"{ubuntu.url}/health", ca_file) as poll:
        res = bench.apply(settings=settings_variant("settings-dead-acme.yaml", dead_acme), limit=ubuntu.name,
                          check=False)
    assert res["rc"] != 0, "a failed issuance must fail the run"
    assert "certbot" in res["log"]
    assert bench.target_exec(ubuntu, "sha256sum", "-b", live).split()[0] == before_file
    assert served_cert_der(ubuntu, ca_file) == before_served, "nginx must keep serving the same certificate"
    assert poll.results and not poll.failures, poll.failures[:5]
    assert bench.apply(limit=ubuntu.name)["changed"] == []


def test_unhealthy_new_nas_container_is_rolled_back_and_the_previous_keeps_serving():
    nas = bench.TARGETS["synology"]
    api = Path(bench.VOLUME, "docker", "loop-api", "api.py")
    good = api.read_text()
    version = Path(bench.VOLUME, "docker", "loop-api", "VERSION").read_text().strip()
    broken = good.replace('if self.path == "/health":', 'if self.path == "/health-disabled":')
    broken = broken.replace("ThreadingHTTPServer((", 'import sys\nprint("loop-api: broken build, /health '
                            'removed", file=sys.stderr, flush=True)\nThreadingHTTPServer((')
    assert broken != good
    api.write_text(broken)
    try:
        with Poller(f"{nas.url}/api/status", NAS_CA) as poll:
            res = bench.apply(limit=nas.name, check=False)
            time.sleep(1)
    finally:
        api.write_text(good)
    assert res["rc"] != 0
    assert "is not healthy" in res["log"] and "loop-api: broken build, /health removed" in res["log"], \
        res["log"][-3000:]
    assert "kept the previous" in res["log"]
    # The previous container is back and serves; the polling client saw failures only during the swap.
    body = httpx.get(f"{nas.url}/api/status", verify=ssl_context(NAS_CA)).json()
    assert body["version"] == version
    assert poll.results[-1][1], poll.results[-3:]
    if poll.failures:
        window = poll.failures[-1][0] - poll.failures[0][0]
        assert window < 60, f"failures over {window:.0f} s, more than the swap"
    res = bench.apply(limit=nas.name)
    assert res["rc"] == 0
    assert bench.apply(limit=nas.name)["changed"] == []


def _deploy_sessions(t):
    out = bench.target_exec(t, "ps", "-o", "pid=,comm=", "-u", t.user, check=False)
    return [line.split()[0] for line in out.splitlines() if line.split()[1].startswith("sshd")]


def test_ssh_connection_dropped_mid_run_then_rerun_converges(ubuntu, ca_file):
    # Something to do: the gateway lost its config and stopped.
    bench.target_exec(ubuntu, "sh", "-c", "systemctl stop mcp-edge-gateway-default.service && "
                      "rm -f /etc/mcp-edge/servers/default.json")
    env = {**os.environ, "MCP_EDGE_SANDBOX_SETTINGS": str(bench.STATE / "settings.yaml"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(bench.ROOT / ".venv" / "bin" / "pyinfra"), "inventories/sandbox.py", "--limit",
                             ubuntu.name, "-y", "deploy.py"], cwd=bench.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, killed = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Beginning operation run" in line or ("Starting operation" in line and not killed):
                time.sleep(0.5)
                for pid in _deploy_sessions(ubuntu):  # the deploy's SSH session drops
                    bench.target_exec(ubuntu, "kill", "-9", pid, check=False)
                    killed.append(pid)
                if killed:
                    break
        lines.append(proc.communicate(timeout=300)[0])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert killed, "the deploy's SSH session was found and dropped"
    print(f"\nrun with its SSH session dropped: exit {proc.returncode}")  # fails, or pyinfra reconnected
    second = bench.apply(limit=ubuntu.name)
    assert second["rc"] == 0, second["log"][-3000:]
    assert bench.apply(limit=ubuntu.name)["changed"] == []
    assert httpx.get(f"{ubuntu.url}/health", verify=ssl_context(ca_file)).status_code == 200
    assert bench.target_exec(ubuntu, "systemctl", "is-active", "mcp-edge-gateway-default.service").strip() == "active"


# --- Secrets ---------------------------------------------------------------------------------------

def test_secrets_never_leak(ubuntu, ca_file, monkeypatch):
    """Known secret values (the sudo password, an `env:` secret in the gateway's and loop-api's
    environment, a bearer token) never show up in any output, process list, shell history or log,
    and the files that hold them are 0600."""
    nas = bench.TARGETS["synology"]
    secret, token = "sek-" + secrets.token_hex(16), secrets.token_urlsafe(32)
    monkeypatch.setenv("MCP_EDGE_TEST_SECRET", secret)
    monkeypatch.setenv("MCP_EDGE_TEST_TOKEN", token)
    known = {"sudo password": bench.sudo_password(), "env secret": secret, "bearer token": token}

    def with_secrets(d):
        d["ubuntu"]["gateway"]["environment"] = {"TEST_SECRET": "env:MCP_EDGE_TEST_SECRET"}
        d["synology"]["loop_api"]["environment"] = {"TZ": "Asia/Seoul", "TEST_SECRET": "env:MCP_EDGE_TEST_SECRET"}
        d["ubuntu"]["nginx"]["access"] = {"bearer_tokens": ["env:MCP_EDGE_TEST_TOKEN"]}

    path = settings_variant("settings-secrets.yaml", with_secrets)
    ps_seen, stop = [], threading.Event()

    def watch_processes():
        while not stop.is_set():
            for t in (ubuntu, nas):
                ps_seen.append(bench.target_exec(t, "ps", "auxww", check=False))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch_processes, daemon=True)
    watcher.start()
    outputs = {}
    try:
        res = bench.apply(settings=path)
        outputs["apply (JSON + log)"] = json.dumps(res)
        assert res["rc"] == 0
        # Rotated secrets: changes the preview must announce without showing them.
        known["rotated env secret"], known["rotated bearer token"] = secret + "-rotated", secrets.token_urlsafe(32)
        monkeypatch.setenv("MCP_EDGE_TEST_SECRET", known["rotated env secret"])
        monkeypatch.setenv("MCP_EDGE_TEST_TOKEN", known["rotated bearer token"])
        preview = bench.pyinfra("--dry", "--diff", "deploy.py", settings=path, check=False)
        outputs["preview (--dry --diff)"] = preview.stdout + preview.stderr
        drift = subprocess.run([str(bench.ROOT / ".venv" / "bin" / "python"), "-m", "mcpedge.drift",
                                "--report", str(bench.STATE / "drift-secrets.json")],
                               cwd=bench.ROOT, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "MCP_EDGE_SETTINGS": str(path)})
        outputs["drift check"] = drift.stdout + drift.stderr + (bench.STATE / "drift-secrets.json").read_text()
        # Every other pyinfra command the README shows (and the usual first step, debug-inventory).
        api = bench.settings_dict()["synology"]["loop_api"]["name"]
        for args in (["debug-inventory"], ["debug-inventory", "--json"], ["--dry", "--json", "deploy.py"],
                     ["--limit", "synology", "--sudo", "fact", "mcpedge.facts.NasStatus"],
                     ["--limit", "synology", "--sudo", "fact", "mcpedge.facts.NasLogs", f"service={api}", "lines=50"],
                     ["--limit", "synology", "-y", "-vv", "mcpedge.nas.restart", f"service={api}"]):
            res = bench.pyinfra(*args, settings=path, check=False)
            assert res.returncode == 0, (args, res.stderr[-2000:])
            outputs["pyinfra " + " ".join(args)] = res.stdout + res.stderr
    finally:
        stop.set()
        watcher.join(30)
    outputs["process lists (ps auxww during and after)"] = "\n".join(
        ps_seen + [bench.target_exec(t, "ps", "auxww") for t in (ubuntu, nas)])
    for t in (ubuntu, nas):
        outputs[f"{t.name} shell histories"] = bench.target_exec(
            t, "sh", "-c", "cat /root/.*history /home/*/.*history 2>/dev/null || true")
    outputs["gw1 journal and nginx logs"] = bench.target_exec(
        ubuntu, "sh", "-c", "journalctl --no-pager -o cat 2>/dev/null; cat /var/log/nginx/*.log /var/log/nginx/*.json")
    outputs["repository (tracked files)"] = subprocess.run(
        ["git", "grep", "-I", "-h", "-F", "-e", secret, "-e", token, "-e", bench.sudo_password()],
        cwd=bench.ROOT, capture_output=True, text=True).stdout
    from mcpedge.pyinfra_compat.fact_cache import plan_dir  # the control machine's fact plans (names and paths only)
    outputs["fact plans"] = "".join(p.read_text() for p in sorted(plan_dir().glob("*.json")))

    leaks = [f"{what} in {where}" for where, text in outputs.items() for what, value in known.items() if value in text]
    try:
        assert not leaks, leaks
        # A rotated secret shows as a change, never its value: the token file is not diffed at all.
        assert "access-tokens.conf (content not shown: it holds secrets)" in outputs["preview (--dry --diff)"]
        # Files that hold secrets: 0600, owned by the service that reads them.
        assert bench.target_exec(ubuntu, "stat", "-c", "%a %U", "/etc/mcp-edge/servers/default.env").split() == \
            ["600", "mcp-gateway"]
        assert bench.target_exec(ubuntu, "stat", "-c", "%a %U", "/etc/nginx/snippets/mcp-edge/access-tokens.conf") \
            .split() == ["600", "root"]
        env_file = f"{bench.VOLUME}/mcp-edge/env/{bench.settings_dict()['synology']['loop_api']['name']}.env"
        assert bench.target_exec(nas, "stat", "-c", "%a %U", env_file).split() == ["600", "root"]  # read by docker
        assert bench.target_exec(nas, "stat", "-c", "%a", f"{bench.VOLUME}/mcp-edge/env").strip() == "700"
    finally:
        res = bench.apply()  # back to the bench settings
        assert res["rc"] == 0, res["log"][-3000:]
