"""Careless and hostile settings: every value is checked for the place it lands in.

Each case below is a value that an earlier release accepted and wrote raw into
an nginx file, a systemd unit, an env file, a root shell script or a Docker
argument. Now each is refused before any host is contacted, with one line
naming the file, the key and what was expected. The last tests run pyinfra
itself: no traceback, and no secret in its output.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcpedge.settings import SettingsError, load
from tests.test_settings import example, load_mutated, write

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [
    # --- nginx: a path, origin or name that nginx would parse as directives ---------
    ("webroot with directives", [("ubuntu.acme.webroot", "/var/www/x; autoindex on; root /etc")],
     r"ubuntu\.acme\.webroot: expected an absolute path"),
    ("webroot with a brace", [("ubuntu.acme.webroot", "/var/www/x{")], r"ubuntu\.acme\.webroot: expected an absolute"),
    ("webroot with a space", [("ubuntu.acme.webroot", "/var/www/a b")], r"ubuntu\.acme\.webroot: expected an absolute"),
    ("webroot with a comment", [("ubuntu.acme.webroot", "/var/www/a#b")], r"ubuntu\.acme\.webroot: expected an absolute"),
    ("webroot with a quote", [("ubuntu.acme.webroot", '/var/www/a"b')], r"ubuntu\.acme\.webroot: expected an absolute"),
    ("webroot is /etc", [("ubuntu.acme.webroot", "/etc")], r"ubuntu\.acme\.webroot: '/etc' is a system directory"),
    ("webroot is /", [("ubuntu.acme.webroot", "/")], r"ubuntu\.acme\.webroot: '/' is a system directory"),
    ("webroot climbs out", [("ubuntu.acme.webroot", "/var/www/../../etc")],
     r"ubuntu\.acme\.webroot: expected an absolute path without '\.\.' components"),
    ("certificate_conf with an include", [("synology.certificate_conf", "/usr/syno/x.conf; include /etc/shadow")],
     r"synology\.certificate_conf: expected an absolute path"),
    ("origin closing the map string", [("ubuntu.nginx.access.allowed_origins", ['https://a.example" 1; default 1; "'])],
     r"ubuntu\.nginx\.access\.allowed_origins\[0\]: expected an origin"),
    ("origin with a semicolon", [("ubuntu.nginx.access.allowed_origins", ["https://claude.ai;"])],
     r"ubuntu\.nginx\.access\.allowed_origins\[0\]: expected an origin"),
    ("origin with an unbalanced IPv6 bracket", [("ubuntu.nginx.access.allowed_origins", ["https://[::1"])],
     r"ubuntu\.nginx\.access\.allowed_origins\[0\]: expected an origin"),
    ("origin with a bad port", [("ubuntu.nginx.access.allowed_origins", ["https://claude.ai:99999"])],
     r"ubuntu\.nginx\.access\.allowed_origins\[0\]: expected an origin"),
    ("metrics_allow with a directive", [("ubuntu.nginx.metrics_allow", ["127.0.0.1; allow all"])],
     r"ubuntu\.nginx\.metrics_allow\[0\]: expected an IP network"),
    ("domain with a semicolon", [("hosts[0].domain", "mcp.example.com;")], r"hosts\[0\]\.domain: expected a DNS name"),
    ("patch entry with a space", [("synology.patch_entries", ["a.example.com b"])],
     r"synology\.patch_entries\[0\]: expected a DNS name"),
    ("upstream with a port glued on", [("synology.upstream_host", "127.0.0.1:80")],
     r"synology\.upstream_host: expected an IP address or a DNS name"),
    # --- numbers beyond what nginx, Node and systemd accept ------------------------------
    ("stream timeout of 30 days", [("ubuntu.nginx.stream_timeout", "30d")],
     r"ubuntu\.nginx\.stream_timeout: expected a duration .* between 1s and 7d, got '30d'"),
    ("stream timeout of 10^20 seconds", [("ubuntu.nginx.stream_timeout", 10**20)],
     r"ubuntu\.nginx\.stream_timeout: number of 21 digits is too long"),
    ("session idle timeout of 30 days", [("ubuntu.gateway.sessions.idle_timeout", "30d")],
     r"ubuntu\.gateway\.sessions\.idle_timeout: expected a duration .* between 1m and 7d"),
    ("body size nginx cannot hold", [("ubuntu.nginx.client_max_body_size", "99999999999999999999g")],
     r"ubuntu\.nginx\.client_max_body_size: expected a size"),
    ("Unicode digits in a rate", [("ubuntu.nginx.rate_limit.per_ip", "１０r/s")],
     r"ubuntu\.nginx\.rate_limit\.per_ip: expected a rate"),
    ("Unicode digits in a duration", [("ubuntu.nginx.stream_timeout", "２４h")],
     r"ubuntu\.nginx\.stream_timeout: expected a duration"),
    ("huge burst", [("ubuntu.nginx.rate_limit.per_ip_burst", 10**12)],
     r"ubuntu\.nginx\.rate_limit\.per_ip_burst: expected an integer between 0 and 100000"),
    ("huge worker_connections", [("ubuntu.nginx.worker_connections", 10**9)],
     r"ubuntu\.nginx\.worker_connections: expected an integer between 16 and 524288"),
    ("rlimit below the connections", [("ubuntu.nginx.worker_rlimit_nofile", 4096)],
     r"ubuntu\.nginx\.worker_rlimit_nofile: 4096 is below 2 x ubuntu\.nginx\.worker_connections \(32768\)"),
    ("per-client cap above the total", [("ubuntu.gateway.sessions.max_per_client", 64)],
     r"ubuntu\.gateway\.sessions\.max_per_client: 64 is more than ubuntu\.gateway\.sessions\.max_total \(16\)"),
    ("keep-alive slower than the stream timeout", [("ubuntu.nginx.stream_timeout", "20s")],
     r"ubuntu\.gateway\.keepalive_interval: 25s is not below ubuntu\.nginx\.stream_timeout \(20s\)"),
    ("memory_max with a directive", [("ubuntu.gateway.memory_max", "1g\nMemoryMax=infinity")],
     r"ubuntu\.gateway\.memory_max: contains a control or invisible character \(U\+000A\)"),
    ("tasks_max unbounded", [("ubuntu.gateway.tasks_max", 10**9)],
     r"ubuntu\.gateway\.tasks_max: expected an integer between 16 and 65536"),
    # --- systemd units: a newline starts a new directive ------------------------------------
    ("inventory adding ExecStartPre", [("control.inventory", "inventory.py\nExecStartPre=/bin/sh -c id")],
     r"control\.inventory: contains a control or invisible character \(U\+000A\)"),
    ("inventory climbing out", [("control.inventory", "../../etc/evil.py")], r"control\.inventory: expected a \.py file"),
    ("inventory with a space", [("control.inventory", "inventory.py --repair")],
     r"control\.inventory: expected a \.py file"),
    ("notify command with a newline", [("control.notify_command", "true\nExecStartPre=/bin/sh")],
     r"control\.notify_command: contains a control or invisible character \(U\+000A\)"),
    ("notify command with a Unicode line separator", [("control.notify_command", "true\u2028x")],
     r"control\.notify_command: contains a control or invisible character \(U\+2028\)"),
    ("control user with a newline", [("control.user", "root\nUser=nobody")],
     r"control\.user: contains a control or invisible character"),
    ("control state_dir with a space", [("control.state_dir", "/var/lib/drift state")],
     r"control\.state_dir: expected an absolute path"),
    ("control state_dir is /var/lib", [("control.state_dir", "/var/lib")],
     r"control\.state_dir: '/var/lib' is a system directory"),
    ("working directory is /", [("ubuntu.gateway.working_directory", "/")],
     r"ubuntu\.gateway\.working_directory: '/' is a system directory"),
    ("working directory is /etc", [("ubuntu.gateway.working_directory", "/etc")],
     r"ubuntu\.gateway\.working_directory: '/etc' is a system directory"),
    ("working directory is the bundle's config", [("ubuntu.gateway.working_directory", "/etc/mcp-edge")],
     r"ubuntu\.gateway\.working_directory: '/etc/mcp-edge' is a system directory"),
    ("working directory inside /usr", [("ubuntu.gateway.working_directory", "/usr/local/lib/mcp-edge")],
     r"ubuntu\.gateway\.working_directory: '/usr/local/lib/mcp-edge' is a system directory"),
    ("working directory is /var/lib", [("ubuntu.gateway.working_directory", "/var/lib")],
     r"ubuntu\.gateway\.working_directory: '/var/lib' is a system directory"),
    ("working directory with a newline", [("ubuntu.gateway.working_directory", "/srv/x\nReadWritePaths=/")],
     r"ubuntu\.gateway\.working_directory: contains a control or invisible character"),
    # --- environment: names that change how the process runs, values that split lines ------
    ("NODE_OPTIONS", [("ubuntu.gateway.environment", {"NODE_OPTIONS": "--require /tmp/x.js"})],
     r"ubuntu\.gateway\.environment\.NODE_OPTIONS: NODE_OPTIONS may not be set here"),
    ("LD_PRELOAD", [("ubuntu.gateway.environment", {"LD_PRELOAD": "/tmp/x.so"})],
     r"ubuntu\.gateway\.environment\.LD_PRELOAD: LD_PRELOAD may not be set here"),
    ("PATH", [("ubuntu.gateway.environment", {"PATH": "/tmp"})],
     r"ubuntu\.gateway\.environment\.PATH: PATH may not be set here"),
    ("PYTHONPATH", [("ubuntu.gateway.environment", {"PYTHONPATH": "/tmp"})],
     r"ubuntu\.gateway\.environment\.PYTHONPATH: PYTHONPATH may not be set here"),
    ("the bundle's own variables", [("ubuntu.gateway.environment", {"MCP_EDGE_VERIFY_TOKEN": "x"})],
     r"ubuntu\.gateway\.environment\.MCP_EDGE_VERIFY_TOKEN: MCP_EDGE_VERIFY_TOKEN may not be set here"),
    ("a value with a newline", [("ubuntu.gateway.environment", {"MODE": "fast\nLD_PRELOAD=/tmp/x.so"})],
     r"ubuntu\.gateway\.environment\.MODE: contains a control or invisible character \(U\+000A\)"),
    ("a NUL in a value", [("ubuntu.gateway.environment", {"MODE": "a\0b"})],
     r"ubuntu\.gateway\.environment\.MODE: contains a control or invisible character \(U\+0000\)"),
    ("a zero-width character in a value", [("ubuntu.gateway.environment", {"MODE": "a\u200bb"})],
     r"ubuntu\.gateway\.environment\.MODE: contains a control or invisible character \(U\+200B\)"),
    ("a docker env-file value with a newline", [("synology.loop_api.environment", {"TZ": "UTC\nVAULT_DIR=/"})],
     r"synology\.loop_api\.environment\.TZ: contains a control or invisible character"),
    ("LD_PRELOAD in a container", [("synology.loop_mcp.environment", {"LD_PRELOAD": "/x.so"})],
     r"synology\.loop_mcp\.environment\.LD_PRELOAD: LD_PRELOAD may not be set here"),
    # --- shell words in root scripts and Docker arguments ----------------------------------
    ("bundle_dir with a quote", [("synology.bundle_dir", "/volume1/mcp'edge")],
     r"synology\.bundle_dir: expected an absolute path"),
    ("bundle_dir with a command substitution", [("synology.bundle_dir", "/volume1/$(reboot)")],
     r"synology\.bundle_dir: expected an absolute path"),
    ("bundle_dir off the data volume", [("synology.bundle_dir", "/root/mcp-edge")],
     r"synology\.bundle_dir: expected a path inside /volume1 or"),
    ("docker path with a command", [("synology.docker", "/usr/local/bin/docker;reboot")],
     r"synology\.docker: expected 'auto' or an absolute path"),
    ("health path breaking out of the quotes", [("synology.loop_api.health_path", "/health')\"; reboot; #")],
     r"synology\.loop_api\.health_path: expected an absolute URL path"),
    ("base image with a command", [("synology.loop_api.base_image", "python:3.11; rm -rf /")],
     r"synology\.loop_api\.base_image: expected a Docker image reference"),
    ("dockerfile outside the context", [("synology.loop_api.dockerfile", "../Dockerfile")],
     r"synology\.loop_api\.dockerfile: expected a file name inside build_context"),
    ("build context climbing out", [("synology.loop_api.build_context", "/volume1/../etc")],
     r"synology\.loop_api\.build_context: expected an absolute path without '\.\.' components"),
    ("email with a quote", [("ubuntu.acme.email", "ops'@example.com")], r"ubuntu\.acme\.email: expected an email"),
    ("ACME URL with a quote", [("ubuntu.acme.server", "https://acme.example.com/dir' --debug")],
     r"ubuntu\.acme\.server: expected 'letsencrypt'"),
    ("ACME URL with an unbalanced IPv6 bracket", [("ubuntu.acme.server", "https://[::1/dir")],
     r"ubuntu\.acme\.server: expected 'letsencrypt'"),
    ("ACME URL with a bad port", [("ubuntu.acme.server", "https://acme.example.com:99999/dir")],
     r"ubuntu\.acme\.server: expected 'letsencrypt'"),
    ("command with shell syntax", [("ubuntu.gateway.command", "node server.js; rm -rf /")],
     r"ubuntu\.gateway\.command: 'node server\.js; rm -rf /' has shell syntax, but no shell runs the command"),
    ("command with a pipe", [("ubuntu.gateway.command", "node server.js | tee /tmp/x")],
     r"ubuntu\.gateway\.command: .* has shell syntax"),
    ("command with a relative program", [("ubuntu.gateway.command", ["./server", "x"])],
     r"ubuntu\.gateway\.command\[0\]: the program must be a name on PATH or an absolute path"),
    ("command argument with a newline", [("ubuntu.gateway.command", ["node", "a\nb"])],
     r"ubuntu\.gateway\.command\[1\]: contains a control or invisible character"),
    # --- Docker on the NAS: mounts and ports that hand over the host -----------------------
    ("mounting /", [("synology.loop_api.volumes", ["/:/host"])], r"synology\.loop_api\.volumes\[0\]: bind mount source '/'"),
    ("mounting the docker socket", [("synology.loop_api.volumes", ["/var/run/docker.sock:/var/run/docker.sock"])],
     r"synology\.loop_api\.volumes\[0\]: bind mount source '/var/run/docker\.sock' would hand the container the host"),
    ("mounting /etc", [("synology.loop_mcp.volumes", ["/etc:/x:ro"])],
     r"synology\.loop_mcp\.volumes\[0\]: bind mount source '/etc' would hand the container the host"),
    ("mount climbing out of the volume", [("synology.loop_mcp.volumes", ["/volume1/../etc:/x"])],
     r"synology\.loop_mcp\.volumes\[0\]: expected an absolute path without '\.\.' components"),
    ("mount over the container's root", [("synology.loop_mcp.volumes", ["/volume1/a:/"])],
     r"synology\.loop_mcp\.volumes\[0\]: bind mount target '/' would replace the container's root"),
    ("mount off the data volumes", [("synology.loop_mcp.volumes", ["/home/admin:/x"])],
     r"synology\.loop_mcp\.volumes\[0\]: bind mount source '/home/admin' is not on a NAS data volume"),
    ("mount of the bundle's secrets", [("synology.loop_mcp.volumes", ["/volume1/mcp-edge/env:/secrets:ro"])],
     r"synology\.loop_mcp\.volumes\[0\]: bind mount source /volume1/mcp-edge/env overlaps synology\.bundle_dir"),
    ("publish on every interface", [("synology.publish_address", "0.0.0.0")],
     r"synology\.publish_address: 0\.0\.0\.0 publishes the containers on every interface"),
    ("publish on every IPv6 interface", [("synology.publish_address", "::")],
     r"synology\.publish_address: :: publishes the containers on every interface"),
    ("a container on DSM's web port", [("synology.loop_api.host_port", 5000)],
     r"synology\.loop_api\.host_port: port 5000 is DSM's web UI"),
    ("guard interval DSM cannot repeat at", [("synology.guard_interval", "7m")],
     r"synology\.guard_interval: expected one of 1m, 5m, 10m, 15m, 20m, 30m"),
    # --- hosts ----------------------------------------------------------------------------
    ("two hosts on one machine", [("hosts[1]", {"name": "gw2", "group": "ubuntu", "address": "203.0.113.10",
                                                "domain": "mcp2.example.com"})],
     r"hosts\[1\]\.address: 203\.0\.113\.10 port 22 is also hosts\[0\] \(gw1\): two hosts on one machine"),
    ("host name too long", [("hosts[0].name", "g" * 100)], r"hosts\[0\]\.name: expected a host name"),
    ("ssh user with a space", [("ssh.user", "deploy -oProxyCommand=x")], r"ssh\.user: expected a user name"),
]


@pytest.mark.parametrize("mutations, pattern", [(m, p) for _, m, p in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_hostile_value_is_refused_naming_file_and_key(env, mutations, pattern):
    with pytest.raises(SettingsError, match=r"(^|\n)settings\.yaml: " + pattern) as exc:
        load_mutated(*mutations)
    for line in exc.value.problems:
        assert re.match(r"settings\.yaml: [\w\[\].]+: ", line), line
        assert "\n" not in line


def test_hostile_table_covers_every_landing_place():
    assert len(HOSTILE) >= 60
    assert len({i for i, _, _ in HOSTILE}) == len(HOSTILE)


def test_sudo_password_file_readable_by_others_is_refused(env, monkeypatch):
    monkeypatch.delenv("MCP_EDGE_SUDO_PASSWORD")
    Path("pw").write_text("secret-pw\n")
    Path("pw").chmod(0o644)
    with pytest.raises(SettingsError, match=r"settings\.yaml: ssh\.sudo_password_file: file .*pw' \(from 'pw'\) "
                                            r"holds a secret but others may read it \(mode 644\): chmod 600 it"):
        load_mutated(("ssh.sudo_password_env", None), ("ssh.sudo_password_file", "pw"))
    Path("pw").chmod(0o600)
    assert load_mutated(("ssh.sudo_password_env", None), ("ssh.sudo_password_file", "pw")).hosts[0].sudo_password


def test_secret_with_a_newline_in_the_environment_is_refused(env, monkeypatch):
    monkeypatch.setenv("MCP_EDGE_SUDO_PASSWORD", "pw\nExecStartPre=x")
    with pytest.raises(SettingsError, match=r"ssh\.sudo_password_env: environment variable MCP_EDGE_SUDO_PASSWORD "
                                            r"\(named by ssh\.sudo_password_env\) holds a control character"):
        load_mutated()


def test_values_that_are_safe_are_kept(env):
    s = load_mutated(("synology.upstream_host", "::1"), ("synology.publish_address", "::1"),
                     ("ubuntu.nginx.access.allowed_origins", ["HTTPS://Claude.AI", "http://[::1]:6274"]),
                     ("ubuntu.gateway.command", ["node", "/opt/x/server.js", "--greeting", "héllo wörld"]))
    nas, ubuntu = s.group("synology"), s.group("ubuntu")
    assert (nas["upstream_host"], nas["publish_address"]) == ("::1", "::1")
    assert ubuntu["nginx"]["access"]["allowed_origins"] == ["https://claude.ai", "http://[::1]:6274"]
    assert ubuntu["gateway"]["command"][-1] == "héllo wörld"  # any text as an argument: no shell reads it
    from mcpedge.model.synology import nas_host
    model = nas_host(nas, {"domain": "loop.example.com"})
    assert model.site.upstream_servers == ["[::1]:8085"] and model.api_upstream == "[::1]:8082"
    assert model.container_spec(nas["loop_api"], "/usr/local/bin/docker")["ports"] == ["[::1]:8082:8081"]


# --- YAML itself: what YAML 1.1 reads differently, and inputs that crashed the loader ------

RAW = [
    ("octal-looking port", "ssh:\n  port: 022\n", r"settings\.yaml: ssh\.port: ambiguous number 022 "
                                                  r"\(YAML 1\.1 reads it as 18\): write it in plain decimal"),
    ("sexagesimal duration", "control:\n  interval: 1:30\n",
     r"settings\.yaml: control\.interval: ambiguous number 1:30 \(YAML 1\.1 reads it as 90\)"),
    ("hex number", "ssh:\n  port: 0x16\n", r"settings\.yaml: ssh\.port: ambiguous number 0x16 \(YAML 1\.1 reads it as 22\)"),
    ("number with underscores", "ssh:\n  port: 2_2\n", r"settings\.yaml: ssh\.port: ambiguous number 2_2"),
    ("5,000-digit number", "ssh:\n  port: " + "9" * 5000 + "\n",
     r"settings\.yaml: ssh\.port: number of 5000 digits is too long"),
    ("very deep nesting", "ssh: " + "[" * 5000 + "]" * 5000 + "\n", r"settings\.yaml: nested more than 32 levels deep"),
    ("a billion laughs", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)), r"settings\.yaml: more than 100000 values \(after expanding YAML aliases\)"),
    ("a control character", "ssh:\n  user: \"de\x07ploy\"\n", r"settings\.yaml: invalid YAML: unacceptable character"),
    ("an escaped control character", 'ssh:\n  user: "de\\x07ploy"\n',
     r"settings\.yaml: ssh\.user: contains a control or invisible character \(U\+0007\)"),
    ("not UTF-8", b"ssh:\n  user: \xff\n", r"settings\.yaml: not UTF-8 text"),
    ("a bad timestamp", "ssh:\n  user: 2026-02-30\n", r"settings\.yaml: invalid YAML value: day is out of range"),
]


@pytest.mark.parametrize("text, pattern", [(t, p) for _, t, p in RAW], ids=[i for i, _, _ in RAW])
def test_raw_yaml_is_refused_with_one_line(env, text, pattern):
    Path("settings.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SettingsError, match=pattern) as exc:
        load("settings.yaml")
    assert all("\n" not in line and len(line) < 400 for line in exc.value.problems)


def test_unbalanced_ipv6_bracket_in_a_url_is_a_clean_error(env):
    with pytest.raises(SettingsError, match=r"ubuntu\.acme\.server: expected 'letsencrypt'"):
        load_mutated(("ubuntu.acme.server", "https://[fe80::1%eth0/dir"))


# --- pyinfra itself: no traceback, no secret -----------------------------------------------

def _pyinfra(settings_path, *args, extra_env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MCP_EDGE_")}
    e.update(extra_env or {})
    if settings_path is not None:
        e["MCP_EDGE_SETTINGS"] = str(settings_path)
    exe = Path(sys.executable).with_name("pyinfra")
    return subprocess.run([str(exe), "inventory.py", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("case", ["unknown key", "octal-looking port", "very deep nesting", "empty variable",
                                  "directory", "bad url"])
def test_pyinfra_shows_the_settings_error_without_a_traceback(env, case):
    path = Path("settings.yaml").resolve()
    if case == "unknown key":
        write({**example(), "ssh": {**example()["ssh"], "bogus": 1}})
    elif case == "octal-looking port":
        path.write_text("ssh:\n  port: 022\nhosts: []\n")
    elif case == "very deep nesting":
        path.write_text("ssh: " + "[" * 3000 + "]" * 3000 + "\n")
    elif case == "bad url":
        data = example()
        data["ubuntu"]["acme"]["server"] = "https://[::1/dir"
        write(data)
    elif case == "directory":
        path = Path("a-directory")
        path.mkdir()
    res = _pyinfra("" if case == "empty variable" else path, "debug-inventory",
                   extra_env={"MCP_EDGE_SUDO_PASSWORD": "s3cret-pw", "HOME": os.environ["HOME"]})
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "File \"" not in out, out
    problems = [line for line in out.splitlines() if not line.startswith("-->")]
    assert problems and all(re.match(r"(\S+: [\w\[\].]*:? ?\S|MCP_EDGE_SETTINGS is set but empty)", p)
                            for p in problems), problems


def test_debug_inventory_and_its_json_hold_no_secret(env, monkeypatch):
    data = example()
    data["ubuntu"]["gateway"]["environment"] = {"API_TOKEN": "env:MCP_EDGE_TEST_SECRET"}
    data["synology"]["loop_api"]["environment"] = {"API_TOKEN": "env:MCP_EDGE_TEST_SECRET"}
    data["ubuntu"]["nginx"]["access"]["bearer_tokens"] = ["env:MCP_EDGE_TEST_TOKEN"]
    write(data)
    secrets = {"MCP_EDGE_SUDO_PASSWORD": "sudo-pw-3f9a1c", "MCP_EDGE_TEST_SECRET": "env-secret-77d0e2",
               "MCP_EDGE_TEST_TOKEN": "tok_" + "A1b2" * 10, "HOME": os.environ["HOME"]}
    for args in (["debug-inventory"], ["debug-inventory", "--json"]):
        res = _pyinfra(Path("settings.yaml").resolve(), *args, extra_env=secrets)
        assert res.returncode == 0, res.stderr[-2000:]
        out = res.stdout + res.stderr
        assert '"_sudo_password": "<secret>"' in out  # the host data is there, masked
        for name, value in secrets.items():
            if name != "HOME":
                assert value not in out, f"{name} printed by pyinfra {' '.join(args)}"
