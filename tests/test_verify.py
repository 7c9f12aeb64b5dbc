"""The verification step of deploy.py: it runs after every apply, stays out of the
change table, and a broken proxy fails it with the check and the likely cause named."""

import json
import re

import pytest
import yaml

import sandbox as bench

pytestmark = pytest.mark.usefixtures("deployed")

SNIPPET = "/etc/nginx/snippets/mcp-edge/proxy-stream.conf"


def _verify_ops(run):
    return [op for op in run["results"]["operations"] if op["name"].startswith("Verify | ")]


def _verify_op_cli(t, ca_file):
    """The same named operation deploy.py runs, alone (pyinfra's op mode)."""
    return bench.pyinfra("--limit", t.name, "-y", "mcpedge.operations.verify.verify_endpoint", f"url={t.url}",
                         f"ca_file={ca_file}", check=False)


@pytest.mark.parametrize("group", ["ubuntu", "synology"])
def test_every_apply_verifies_the_endpoint_without_counting_a_change(deployed, group):
    target = bench.TARGETS[group]
    for run in (deployed["first"], deployed["second"]):
        assert run["rc"] == 0, run["log"][-3000:]
        [op] = [op for op in _verify_ops(run) if target.url in op["name"]]
        assert op["no_change"] == [target.name] and op["success"] == [] and op["error"] == []
        for line in ("ok  certificate: valid for", "ok  health: 200", "ok  sse: endpoint event after",
                     "ok  sse: initialize + tools/list ok", "ok  streamable-http: initialize + tools/list ok",
                     "ok  streamable-http: session id returned, GET stream opens"):
            assert f"verify {target.url}: {line}" in run["log"], line


def test_dry_run_plans_no_change_for_the_verification(ubuntu):
    res = bench.pyinfra("--limit", ubuntu.name, "--dry", "--json", "deploy.py")
    plan = json.loads(res.stdout)["plan"]
    verify = [op for op in plan if op["name"].startswith("Verify | ")]
    assert verify and verify[0]["hosts_with_change"] == []
    assert [op["name"] for op in plan if op["hosts_with_change"]] == [], "a converged host plans no change"
    assert "verify https://" not in res.stderr, "a dry run contacts no endpoint"


def test_proxy_holding_events_fails_verification_naming_buffering(ubuntu, ca_file):
    # Bench-side break of the deployed snippet: buffering on, gzip on for event streams.
    bench.target_exec(ubuntu, "sh", "-c", (
        f"cp -p {SNIPPET} /root/proxy-stream.conf.bak && "
        f"sed -i -e 's/^proxy_buffering off;/proxy_buffering on;/' "
        f"-e 's/^gzip off;/gzip on; gzip_types text\\/event-stream;/' {SNIPPET} && "
        # ... and deaf to the gateway's own X-Accel-Buffering: no, as a proxy set up that way is.
        f"echo 'proxy_ignore_headers X-Accel-Buffering;' >> {SNIPPET} && systemctl reload nginx"))
    try:
        res = _verify_op_cli(ubuntu, ca_file)
    finally:
        bench.target_exec(ubuntu, "sh", "-c", f"cp -p /root/proxy-stream.conf.bak {SNIPPET} && systemctl reload nginx")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "sse endpoint event: held back" in out, out[-3000:]
    assert "likely cause: buffering or compression on" in out
    assert _verify_op_cli(ubuntu, ca_file).returncode == 0, "restored proxy verifies again"


def test_upstream_down_fails_verification_naming_the_upstream(ubuntu, ca_file):
    units = ("mcp-edge-gateway-default.socket", "mcp-edge-gateway-default.service")
    bench.target_exec(ubuntu, "systemctl", "stop", *units)
    try:
        res = _verify_op_cli(ubuntu, ca_file)
    finally:
        bench.target_exec(ubuntu, "systemctl", "start", *units)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "health: /health answered 503" in out, out[-3000:]
    assert "likely cause: upstream down" in out


def _settings_with(name, **verify):
    data = yaml.safe_load((bench.STATE / "settings.yaml").read_text())
    data["ubuntu"]["verify"].update(verify)
    return bench.write_settings(data, name=name)


def test_certificate_expiring_within_the_limit_fails_the_apply(ubuntu):
    res = bench.apply(settings=_settings_with("settings-cert-days.yaml", cert_min_days=3650), check=False,
                      limit=ubuntu.name)
    assert res["rc"] == 1
    log = res["log"]
    # The only host failed, so pyinfra prints no results table: the log tells.
    verify_part = log[log.index("--> Starting operation: Verify | "):]
    assert re.search(rf"\[{ubuntu.name}\]\s+Error", verify_part), verify_part[-2000:]
    assert "certificate: expires in" in verify_part
    assert "likely cause: certificate renewal is not working" in verify_part
    assert "Success" not in log.replace("Successful", ""), "the host itself was converged: nothing changed"


def test_verification_can_be_switched_off(ubuntu):
    res = bench.apply(settings=_settings_with("settings-no-verify.yaml", enabled=False), limit=ubuntu.name)
    assert res["rc"] == 0 and _verify_ops(res) == []
    assert "verify https://" not in res["log"]
