"""Preview, drift check and scheduled drift repair, against the real bench targets.

The gateway gets a secret (``ubuntu.gateway.environment.API_TOKEN`` from
``env:``); every output of every run here is kept and searched for it at the end.
The control host is a second systemd target holding a checkout of the bundle.
"""

import json
import os
import secrets
import subprocess
import time

import pytest
import yaml

import sandbox as bench
from sandbox import control as ctl
from tasks.ubuntu.packages import PACKAGES

pytestmark = pytest.mark.usefixtures("deployed")

TOKEN_VAR = "MCP_EDGE_TEST_API_TOKEN"
TOKEN = "mcpedge-test-" + secrets.token_urlsafe(18)
OTHER_TOKEN = "mcpedge-rotated-" + secrets.token_urlsafe(18)
OUTPUTS: list[tuple[str, str]] = []  # (what, text) of every run, searched for the secret at the end
GW = bench.TARGETS["ubuntu"].name  # the drift runs here are about the gateway host only
DOMAIN = bench.TARGETS["ubuntu"].domain
UNIT_PATH = "/etc/systemd/system/mcp-edge-gateway-default.service"
ENV_PATH = "/etc/mcp-edge/servers/default.env"
PROGRAM = "/usr/local/lib/mcp-edge/mcp_edge_gateway/sessions.py"  # one module of the gateway package


def keep(what: str, *texts: str) -> None:
    for text in texts:
        OUTPUTS.append((what, text or ""))


@pytest.fixture(scope="module")
def settings(deployed, tmp_path_factory):
    """The bench settings plus a secret in the gateway's environment, applied."""
    data = bench.settings_dict()
    data["ubuntu"]["gateway"]["environment"] = {"API_TOKEN": f"env:{TOKEN_VAR}", "GREETING": "hello"}
    path = bench.write_settings(data, name="settings-drift.yaml")
    os.environ[TOKEN_VAR] = TOKEN
    res = bench.apply(settings=path, limit=GW)
    keep("apply with the secret", res["log"], json.dumps(res))
    assert res["rc"] == 0
    yield path
    # Leave the bench as the other test files expect it: the plain bench settings.
    bench.apply(limit=GW)
    os.environ.pop(TOKEN_VAR, None)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("drift-state")


def drift(settings_path, state_dir, *args, env=None):
    """python -m mcpedge.drift on the sandbox inventory; returns rc, stdout, report."""
    report = state_dir.parent / f"report-{len(OUTPUTS)}.json"
    e = dict(os.environ, MCP_EDGE_SANDBOX_SETTINGS=str(settings_path), **(env or {}))
    res = subprocess.run([str(bench.ROOT / ".venv/bin/python"), "-m", "mcpedge.drift", "inventories/sandbox.py",
                          "--limit", GW, "--report", str(report), "--state-dir", str(state_dir), *args],
                         cwd=bench.ROOT, env=e, capture_output=True, text=True, timeout=900)
    text = report.read_text() if report.exists() else ""
    keep(f"drift {' '.join(args)}", res.stdout, res.stderr, text)
    return res.returncode, res.stdout, json.loads(text) if text else None


def on_gateway(*cmd, check=True):
    return bench.target_exec(bench.TARGETS["ubuntu"], "sh", "-c", " ".join(cmd), check=check)


# --- Preview ----------------------------------------------------------------------------------

def test_preview_shows_a_masked_diff_of_the_secret_file(settings):
    """A rotated secret shows as a changed digest: never the old or the new value."""
    res = bench.pyinfra("--limit", GW, "deploy.py", "--dry", "--diff", settings=settings, env={TOKEN_VAR: OTHER_TOKEN})
    keep("preview --dry --diff", res.stdout, res.stderr)
    out = res.stdout + res.stderr
    assert f"Will modify {ENV_PATH} (secret values masked)" in out
    removed = [line for line in out.splitlines() if line.strip().startswith("-API_TOKEN=<masked sha256:")]
    added = [line for line in out.splitlines() if line.strip().startswith("+API_TOKEN=<masked sha256:")]
    assert len(removed) == len(added) == 1 and removed[0].split(":")[-1] != added[0].split(":")[-1]

    res = bench.pyinfra("--limit", GW, "deploy.py", "--dry", "--json", settings=settings, env={TOKEN_VAR: OTHER_TOKEN})
    keep("preview --dry --json", res.stdout, res.stderr)
    changed = [op["name"] for op in json.loads(res.stdout)["plan"] if op["hosts_with_change"]]
    assert changed == ["MCP gateway | Environment of default (0600, may hold secrets)"]


def test_preview_on_a_fresh_host_diffs_every_managed_file(settings):
    """The control container is still bare: as a gateway host, every file would be created."""
    t = ctl.start(fresh=True)
    data = yaml.safe_load(settings.read_text())
    data["hosts"].append({"name": "fresh", "group": "ubuntu", "address": "127.0.0.1", "port": t.ssh_port,
                          "domain": f"fresh.{DOMAIN}", "known_hosts_file": "known_hosts-ctl"})
    path = bench.write_settings(data, name="settings-fresh.yaml")
    res = bench.pyinfra("--limit", "fresh", "deploy.py", "--dry", "--diff", settings=path)
    keep("fresh preview", res.stdout, res.stderr)
    created = {line.split("Will create ", 1)[1].split()[0] for line in res.stderr.splitlines() if "Will create " in line}
    expected = {
        "/etc/nginx/nginx.conf", "/etc/nginx/conf.d/mcp-edge-http.conf",
        "/etc/nginx/sites-available/mcp-edge-acme.conf", "/etc/nginx/sites-available/mcp-edge-site.conf",
        *(f"/etc/nginx/snippets/mcp-edge/{n}" for n in ("proxy-stream.conf", "mcp-locations.conf",
                                                       "json-errors.conf", "security-headers.conf", "tls.conf")),
        ENV_PATH, "/etc/mcp-edge/servers/default.json", UNIT_PATH,
        "/etc/systemd/system/mcp-edge-gateway-default.socket", PROGRAM, "/usr/local/lib/mcp-edge/mcp-edge-nginx-commit", "/etc/mcp-edge/nginx-commit.conf",
        "/etc/letsencrypt/renewal-hooks/deploy/mcp-edge-reload-nginx", "/etc/mcp-edge/nginx-managed.list",
    }
    assert expected <= created, sorted(expected - created)


# --- Drift check ------------------------------------------------------------------------------

def test_converged_host_has_no_drift(settings, state_dir):
    rc, out, report = drift(settings, state_dir)
    assert rc == 0, out
    assert "gw1: no drift" in out
    assert report["status"] == "no drift" and report["drift"] == []
    # The check also proved the public endpoint, as an apply does.
    assert f"endpoint     https://{DOMAIN}: verified" in out
    assert report["hosts"][0]["verify"]["ok"] is True


def test_failing_endpoint_without_drift_is_an_error(settings, state_dir):
    data = yaml.safe_load(settings.read_text())
    data["ubuntu"]["verify"]["cert_min_days"] = 3650  # longer than the bench CA's certificates live
    rc, out, report = drift(bench.write_settings(data, name="settings-drift-verify.yaml"), state_dir)
    assert rc == 1, out
    host = report["hosts"][0]
    assert host["status"] == "error" and report["drift"] == []
    assert "certificate: expires in" in host["error"] and "likely cause: certificate renewal" in host["error"]


DRIFTS = {
    "edited nginx file": ("echo '# hand edit' >> /etc/nginx/snippets/mcp-edge/tls.conf",
                          "content", "/etc/nginx/snippets/mcp-edge/tls.conf"),
    "deleted nginx file": ("rm /etc/nginx/sites-available/mcp-edge-acme.conf",
                           "missing", "/etc/nginx/sites-available/mcp-edge-acme.conf"),
    "edited systemd unit": (f"sed -i 's/^RestartSec=1$/RestartSec=30/' {UNIT_PATH}", "content", UNIT_PATH),
    "mode of the env file": (f"chmod 644 {ENV_PATH}", "mode", ENV_PATH),
    "deleted certificate": (f"rm /etc/letsencrypt/live/{DOMAIN}/fullchain.pem /etc/letsencrypt/live/{DOMAIN}/privkey.pem",
                            "certificate", DOMAIN),
    "gateway program deleted": (f"rm {PROGRAM}", "missing", PROGRAM),
    "aiohttp removed": ("DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq python3-aiohttp >/dev/null 2>&1",
                        "package", " ".join(PACKAGES)),
}
RESTORED = {
    "edited nginx file": "! grep -q 'hand edit' /etc/nginx/snippets/mcp-edge/tls.conf",
    "deleted nginx file": "test -s /etc/nginx/sites-available/mcp-edge-acme.conf",
    "edited systemd unit": f"grep -q '^RestartSec=1$' {UNIT_PATH}",
    "mode of the env file": f"test $(stat -c %a {ENV_PATH}) = 600",
    "deleted certificate": f"test -s /etc/letsencrypt/live/{DOMAIN}/fullchain.pem",
    "gateway program deleted": f"test -s {PROGRAM} && systemctl is-active -q mcp-edge-gateway-default",
    "aiohttp removed": "dpkg -s python3-aiohttp >/dev/null && systemctl is-active -q mcp-edge-gateway-default",
}


@pytest.mark.parametrize("case", list(DRIFTS))
def test_drift_is_named_then_repaired(settings, state_dir, case):
    command, kind, resource = DRIFTS[case]
    on_gateway(command)

    rc, out, report = drift(settings, state_dir)
    assert rc == 2, out
    found = [d for d in report["drift"] if d["kind"] == kind and d["resource"] == resource]
    assert found, report["drift"]
    assert resource in out and "gw1: drift (corrective" in out  # a hand edit: settings unchanged
    if kind in ("content", "missing"):
        assert found[0]["diff"].startswith("--- ") and found[0]["after"].startswith("sha256:")
    if kind == "mode":
        assert (found[0]["before"], found[0]["after"]) == ("644", "600")

    rc, out, report = drift(settings, state_dir, "--repair")
    assert rc == 2, out
    assert report["status"] == "repaired" and report["hosts"][0]["restored"]
    on_gateway(RESTORED[case])  # fails unless restored

    rc, out, report = drift(settings, state_dir)
    assert rc == 0 and report["drift"] == [], out


def test_settings_change_is_intentional(settings, state_dir):
    data = yaml.safe_load(settings.read_text())
    data["ubuntu"]["nginx"]["hsts_max_age"] = 63072000
    changed = bench.write_settings(data, name="settings-drift-hsts.yaml")
    rc, out, report = drift(changed, state_dir)
    assert rc == 2, out
    host = report["hosts"][0]
    assert host["change"] == "intentional" and "settings changed" in host["reason"]
    assert any(d["resource"] == "/etc/nginx/snippets/mcp-edge/security-headers.conf" for d in report["drift"])
    rc, out, _ = drift(settings, state_dir)  # nothing was applied: the host still matches the settings
    assert rc == 0, out


def test_unreachable_host_is_an_error(settings, state_dir):
    data = yaml.safe_load(settings.read_text())
    data["hosts"][0]["port"] = 1  # nothing listens there
    rc, out, report = drift(bench.write_settings(data, name="settings-drift-down.yaml"), state_dir)
    assert rc == 1, out
    assert report["status"] == "error"


# --- Scheduled repair on the control host ------------------------------------------------------

NOTIFY = ("printf '%s\\n' \"$MCP_EDGE_DRIFT_EVENT\" > /var/lib/mcp-edge-drift/notified.event && "
          "cp \"$MCP_EDGE_DRIFT_REPORT\" /var/lib/mcp-edge-drift/notified.json")


def on_control(*cmd, check=True):
    return bench.target_exec(ctl.CONTROL, "sh", "-c", " ".join(cmd), check=check)


def last_run():
    return json.loads(on_control("cat", f"{ctl.STATE_DIR}/last-run.json"))


@pytest.fixture(scope="module")
def control_host(settings):
    """The control container provisioned, then the bundle installs the timer on it."""
    ctl.start()
    environment = {TOKEN_VAR: TOKEN}
    # The same gateway settings (the secret included), seen from the control host.
    ctl.provision(environment, {"ubuntu": {"gateway": yaml.safe_load(settings.read_text())["ubuntu"]["gateway"]}})
    data = ctl.deploying_settings(yaml.safe_load(settings.read_text()), {"interval": "1h", "notify_command": NOTIFY})
    path = bench.write_settings(data, name="settings-drift-ctl.yaml")
    first = bench.apply(settings=path, limit="ctl")
    second = bench.apply(settings=path, limit="ctl")
    keep("control apply", first["log"], second["log"])
    yield {"first": first, "second": second}
    subprocess.run(["docker", "rm", "-f", ctl.CONTROL.container], capture_output=True)


def test_timer_and_service_are_installed_on_the_control_host(control_host):
    assert control_host["first"]["rc"] == 0, control_host["first"]["log"][-3000:]
    assert control_host["second"]["changed"] == []
    assert on_control("systemctl is-enabled mcp-edge-drift.timer").strip() == "enabled"
    assert on_control("systemctl is-active mcp-edge-drift.timer").strip() == "active"
    timers = on_control("systemctl list-timers --all --no-pager mcp-edge-drift.timer")
    assert "mcp-edge-drift.service" in timers


def test_service_run_repairs_drift_as_corrective_and_notifies(control_host):
    on_control("systemctl start mcp-edge-drift.service")  # baseline: converged, recorded
    assert last_run()["status"] == "no drift"
    on_gateway("echo '# hand edit' >> /etc/nginx/conf.d/mcp-edge-http.conf")

    on_control("systemctl start mcp-edge-drift.service")
    report = last_run()
    assert report["status"] == "repaired", report
    assert report["hosts"][0]["change"] == "corrective"
    assert [d["resource"] for d in report["drift"]] == ["/etc/nginx/conf.d/mcp-edge-http.conf"]
    on_gateway("! grep -q 'hand edit' /etc/nginx/conf.d/mcp-edge-http.conf")
    assert on_control(f"cat {ctl.STATE_DIR}/notified.event").strip() == "corrective"
    assert json.loads(on_control(f"cat {ctl.STATE_DIR}/notified.json"))["status"] == "repaired"
    assert on_control(f"ls {ctl.STATE_DIR}/reports").strip().endswith("-repaired.json")


def test_second_run_while_the_lock_is_held_does_nothing(control_host):
    on_gateway("echo '# hand edit' >> /etc/nginx/conf.d/mcp-edge-http.conf")
    before = on_control(f"sha256sum {ctl.STATE_DIR}/last-run.json")
    # Another run holds the lock (this python stands in for it).
    subprocess.run(["docker", "exec", "-d", ctl.CONTROL.container, "sh", "-c",
                    "echo $$ > /run/lock-holder.pid; exec python3 -c \"import fcntl, time; "
                    f"f = open('{ctl_lock()}', 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
                    "open('/run/lock-holder.ready', 'w'); time.sleep(120)\""], check=True)
    try:
        for _ in range(50):
            if on_control("test -e /run/lock-holder.ready && echo yes", check=False).strip() == "yes":
                break
            time.sleep(0.2)
        t0 = time.monotonic()
        on_control("systemctl start mcp-edge-drift.service")
        assert time.monotonic() - t0 < 20
        journal = on_control("journalctl -u mcp-edge-drift.service --no-pager -o cat -n 5")
        assert "another drift run holds" in journal
        assert on_control(f"sha256sum {ctl.STATE_DIR}/last-run.json") == before
        on_gateway("grep -q 'hand edit' /etc/nginx/conf.d/mcp-edge-http.conf")  # not repaired
    finally:
        on_control("kill $(cat /run/lock-holder.pid); rm -f /run/lock-holder.ready", check=False)
    on_control("systemctl start mcp-edge-drift.service")  # the lock is free again: repaired
    assert last_run()["status"] == "repaired"


def ctl_lock():
    from mcpedge.model.paths import DRIFT_LOCK

    return DRIFT_LOCK


def test_no_output_holds_the_secret(settings, control_host):
    # The secret really is in use on the gateway ...
    assert TOKEN in on_gateway(f"cat {ENV_PATH}")
    # ... and in no output: runs here, the control host's journal, reports and state.
    keep("control journal", on_control("journalctl --no-pager -o cat -u mcp-edge-drift.service"))
    keep("control state", on_control(f"cat {ctl.STATE_DIR}/*.json {ctl.STATE_DIR}/reports/*.json"))
    assert len(OUTPUTS) > 10
    for what, text in OUTPUTS:
        for secret in (TOKEN, OTHER_TOKEN, bench.sudo_password()):
            assert secret not in text, f"a secret value is in the output of: {what}"
