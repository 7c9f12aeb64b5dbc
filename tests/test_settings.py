"""Tests of mcpedge.settings: the example loads, bad input is named precisely."""

import copy
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import yaml

from mcpedge import settings
from mcpedge.settings import Secret, SettingsError, load

EXAMPLE = Path(__file__).resolve().parent.parent / "settings.example.yaml"
UNSET = "MCP_EDGE_TEST_NOT_SET"
DELETE = object()


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _tokens(dotted: str) -> list:
    return [int(t[1:-1]) if t.startswith("[") else t for t in re.findall(r"\[\d+\]|[^.\[\]]+", dotted)]


def deep_set(data, dotted: str, value):
    *parents, last = _tokens(dotted)
    node = data
    for token in parents:
        node = node[token]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value


def write(data, name="settings.yaml") -> str:
    Path(name).write_text(yaml.safe_dump(data, sort_keys=False))
    return name


def load_mutated(*mutations) -> settings.Settings:
    data = example()
    for dotted, value in mutations:
        deep_set(data, dotted, value)
    return load(write(data))


SECOND_HOST = {"name": "gw2", "group": "ubuntu", "address": "203.0.113.11", "domain": "mcp2.example.com"}

BAD = [
    # (id, mutations, regex the message must contain; "settings.yaml: " is prepended)
    ("unknown key", [("ubuntu.nginx.wrker_processes", 2)],
     r"ubuntu\.nginx\.wrker_processes: unknown key \(known: worker_processes, .*did you mean 'worker_processes'"),
    ("unknown top-level section", [("ubutnu", {})],
     r"ubutnu: unknown top-level section \(known: ssh, hosts, ubuntu, synology, control\); did you mean 'ubuntu'"),
    ("misspelt synology section", [("synolgy", {})],
     r"synolgy: unknown top-level section \(known: ssh, hosts, ubuntu, synology, control\); did you mean 'synology'"),
    ("unknown host key", [("hosts[0].domian", "x.example.com")], r"hosts\[0\]\.domian: unknown key \(known: name, group"),
    ("wrong type for port", [("ssh.port", "twenty")],
     r"ssh\.port: expected a port number between 1 and 65535, got 'twenty'"),
    ("port out of range", [("ssh.port", 70000)], r"ssh\.port: expected a port number between 1 and 65535, got 70000"),
    ("per-host port out of range", [("hosts[0].port", 0)], r"hosts\[0\]\.port: expected a port number .*got 0"),
    ("invalid domain", [("hosts[0].domain", "mcp_gw.example.com")],
     r"hosts\[0\]\.domain: expected a DNS name like 'mcp\.example\.com'.*got 'mcp_gw\.example\.com'"),
    ("domain without dot", [("hosts[0].domain", "localhost")], r"hosts\[0\]\.domain: expected a DNS name.*got 'localhost'"),
    ("domain with trailing dot", [("hosts[0].domain", "mcp.example.com.")], r"hosts\[0\]\.domain: expected a DNS name"),
    ("duplicate domains", [("hosts[1]", dict(SECOND_HOST, domain="MCP.example.com"))],
     r"hosts\[1\]\.domain: duplicate domain 'mcp\.example\.com' \(also hosts\[0\]\.domain\)"),
    ("missing domain on ubuntu host", [("hosts[0].domain", DELETE)],
     r"hosts\[0\]\.domain: missing: hosts in group 'ubuntu' need a domain"),
    ("invalid address", [("hosts[0].address", "gw 1!")], r"hosts\[0\]\.address: expected an IP address or a DNS name \(IPv6 without brackets\), got 'gw 1!'"),
    ("missing host name", [("hosts[0].name", DELETE)], r"hosts\[0\]\.name: missing required key \(unique name used by pyinfra"),
    ("duplicate host names", [("hosts[1]", dict(SECOND_HOST, name="gw1"))],
     r"hosts\[1\]\.name: duplicate host name 'gw1' \(also hosts\[0\]\.name\)"),
    ("host not a mapping", [("hosts[0]", "gw1")], r"hosts\[0\]: expected a mapping, got 'gw1'"),
    ("no hosts", [("hosts", [])], r"hosts: expected a non-empty list of hosts, got an empty list"),
    ("hosts section missing", [("hosts", DELETE)], r"hosts: missing required section"),
    ("unknown group", [("hosts[0].group", "windows")],
     r"hosts\[0\]\.group: unknown group 'windows' \(known groups: ubuntu, synology, control\)"),
    # --- the synology section (hosts[1] of the example is the NAS nas1) ---
    ("synology host without domain", [("hosts[1].domain", DELETE)],
     r"hosts\[1\]\.domain: missing: hosts in group 'synology' need a domain \(the public name of their MCP endpoint\)"),
    ("synology host domain taken", [("hosts[1].domain", "mcp.example.com")],
     r"hosts\[1\]\.domain: duplicate domain 'mcp\.example\.com' \(also hosts\[0\]\.domain\)"),
    ("unknown synology key", [("synology.dockr", "auto")],
     r"synology\.dockr: unknown key \(known: docker, bundle_dir, .*did you mean 'docker'"),
    ("synology section not a mapping", [("synology", "nas")], r"synology: expected a mapping, got 'nas'"),
    ("synology nginx not a mapping", [("synology.nginx", "fast")], r"synology\.nginx: expected a mapping, got 'fast'"),
    ("synology nginx has no workers", [("synology.nginx.worker_processes", 2)],
     r"synology\.nginx\.worker_processes: unknown key \(known: stream_timeout, client_max_body_size, rate_limit, "
     r"metrics_allow, hsts_max_age, access\)"),
    ("volume with a relative host path", [("synology.loop_api.volumes[0]", "LOOP_CORE/vault:/vault:rw")],
     r"synology\.loop_api\.volumes\[0\]: expected a bind mount '/volumeN/path:/container/path'"),
    ("bearer token written in the file", [("ubuntu.nginx.access.bearer_tokens", ["s3cr3t-token-in-the-file"])],
     r"ubuntu\.nginx\.access\.bearer_tokens\[0\]: expected 'env:NAME'"),
    ("bearer token env var not set", [("ubuntu.nginx.access.bearer_tokens", [f"env:{UNSET}"])],
     rf"ubuntu\.nginx\.access\.bearer_tokens\[0\]: environment variable {UNSET} is not set"),
    ("bearer token too short", [("ubuntu.nginx.access.bearer_tokens", ["env:HOME"])],
     r"ubuntu\.nginx\.access\.bearer_tokens\[0\]: the value of environment variable HOME must be 32 to 512 characters"),
    ("allow-list entry not a CIDR", [("synology.nginx.access.allow", ["10.0.0.0/8", "everyone"])],
     r"synology\.nginx\.access\.allow\[1\]: expected an IP network"),
    ("origin with a path", [("ubuntu.nginx.access.allowed_origins", ["https://claude.ai/x"])],
     r"ubuntu\.nginx\.access\.allowed_origins\[0\]: expected an origin like 'https://claude\.ai'"),
    ("min_free_disk not a size", [("ubuntu.preflight.min_free_disk", "1 GiB")],
     r"ubuntu\.preflight\.min_free_disk: expected a size like '512k', '4m' or '1g'"),
    ("preflight disk path relative", [("ubuntu.preflight.disk_paths", ["var"])],
     r"ubuntu\.preflight\.disk_paths\[0\]: expected an absolute path"),
    ("synology nginx rate", [("synology.nginx.rate_limit.per_session", "10/s")],
     r"synology\.nginx\.rate_limit\.per_session: expected a rate like '10r/s' or '600r/m' \(1 to 100000 requests\), got '10/s'"),
    ("volume with a named volume", [("synology.loop_api.volumes[1]", "vault:/vault/exec")],
     r"synology\.loop_api\.volumes\[1\]: expected a bind mount '/volumeN/path:/container/path' with an optional "
     r"':ro' or ':rw', got 'vault:/vault/exec'"),
    ("volume with a bad mode", [("synology.loop_mcp.volumes[0]", "/volume1/LOOP_CORE/vault/LOOP:/vault:rx")],
     r"synology\.loop_mcp\.volumes\[0\]: expected a bind mount .*got '/volume1/LOOP_CORE/vault/LOOP:/vault:rx'"),
    ("volume with a relative container path", [("synology.loop_mcp.volumes[0]", "/volume1/LOOP_CORE:vault")],
     r"synology\.loop_mcp\.volumes\[0\]: expected a bind mount .*got '/volume1/LOOP_CORE:vault'"),
    ("volume without a container path", [("synology.loop_mcp.volumes[0]", "/volume1/LOOP_CORE")],
     r"synology\.loop_mcp\.volumes\[0\]: expected a bind mount .*got '/volume1/LOOP_CORE'"),
    ("volumes not a list", [("synology.loop_mcp.volumes", "/a:/b")],
     r"synology\.loop_mcp\.volumes: expected a list, each entry a bind mount .*got '/a:/b'"),
    ("relative build_context", [("synology.loop_mcp.build_context", "docker/loop-mcp")],
     r"synology\.loop_mcp\.build_context: expected an absolute path starting with '/' .*got 'docker/loop-mcp'"),
    ("dockerfile with a directory", [("synology.loop_api.dockerfile", "docker/Dockerfile")],
     r"synology\.loop_api\.dockerfile: expected a file name inside build_context, got 'docker/Dockerfile'"),
    ("loop_api and loop_mcp on one host_port", [("synology.loop_mcp.host_port", 8082)],
     r"synology\.loop_mcp\.host_port: port 8082 is also synology\.loop_api\.host_port: two services on one port"),
    ("host_port 443", [("synology.loop_api.host_port", 443)],
     r"synology\.loop_api\.host_port: port 443 is DSM's nginx"),
    ("host_port 80", [("synology.loop_mcp.host_port", 80)], r"synology\.loop_mcp\.host_port: port 80 is DSM's nginx"),
    ("host_port out of range", [("synology.loop_api.host_port", 0)],
     r"synology\.loop_api\.host_port: expected a port number between 1 and 65535, got 0"),
    ("container_port not a number", [("synology.loop_mcp.container_port", "8085/tcp")],
     r"synology\.loop_mcp\.container_port: expected a port number between 1 and 65535, got '8085/tcp'"),
    ("two containers with one name", [("synology.loop_mcp.name", "loop-api")],
     r"synology\.loop_mcp\.name: container name 'loop-api' is also synology\.loop_api\.name"),
    ("container name with a space", [("synology.loop_api.name", "loop api")],
     r"synology\.loop_api\.name: expected a container name, got 'loop api'"),
    ("unknown restart policy", [("synology.loop_api.restart", "sometimes")],
     r"synology\.loop_api\.restart: expected one of 'no', 'always', 'unless-stopped', 'on-failure', got 'sometimes'"),
    ("restart policy unquoted no", [("synology.loop_mcp.restart", False)],
     r"synology\.loop_mcp\.restart: expected one of 'no', .*got false \(YAML reads unquoted yes/no/on/off"),
    ("docker not auto or absolute", [("synology.docker", "docker")],
     r"synology\.docker: expected 'auto' or an absolute path, got 'docker'"),
    ("docker path with a space", [("synology.docker", "/usr/local/bin/docker --tls")],
     r"synology\.docker: expected 'auto' or an absolute path, got '/usr/local/bin/docker --tls'"),
    ("relative bundle_dir", [("synology.bundle_dir", "volume1/mcp-edge")],
     r"synology\.bundle_dir: expected an absolute path starting with '/' .*got 'volume1/mcp-edge'"),
    ("patch_entries entry not a domain", [("synology.patch_entries", ["dsm.example.com", "192.0.2.20"])],
     r"synology\.patch_entries\[1\]: expected a DNS name like 'mcp\.example\.com'.*got '192\.0\.2\.20'"),
    ("patch_entries not a list", [("synology.patch_entries", "dsm.example.com")],
     r"synology\.patch_entries: expected a list, each entry a DNS name .*got 'dsm\.example\.com'"),
    ("guard_interval too short", [("synology.guard_interval", "30s")],
     r"synology\.guard_interval: expected one of 1m, 5m, 10m, 15m, 20m, 30m \(DSM's Task Scheduler repeats only at these\), got '30s'"),
    ("health_timeout too short", [("synology.loop_api.health_timeout", 2)],
     r"synology\.loop_api\.health_timeout: expected a duration like .* between 5s and 30m, got 2"),
    ("health_path not absolute", [("synology.loop_mcp.health_path", "health")],
     r"synology\.loop_mcp\.health_path: expected an absolute URL path, got 'health'"),
    ("publish_address invalid", [("synology.publish_address", "0.0.0.0/0")],
     r"synology\.publish_address: expected an IP address like '127\.0\.0\.1' or '::1' \(IPv6 without brackets\), got '0\.0\.0\.0/0'"),
    ("container env reference not set", [("synology.loop_api.environment.API_TOKEN", f"env:{UNSET}")],
     rf"synology\.loop_api\.environment\.API_TOKEN: environment variable {UNSET} is not set "
     r"\(named by synology\.loop_api\.environment\.API_TOKEN\)"),
    ("container env value not a string", [("synology.loop_mcp.environment.WORKERS", 2)],
     r"synology\.loop_mcp\.environment\.WORKERS: expected a string value .*got 2"),
    ("missing secret env var", [("ssh.sudo_password_env", UNSET)],
     rf"ssh\.sudo_password_env: environment variable {UNSET} is not set \(named by ssh\.sudo_password_env\)"),
    ("lowercase sudo env name", [("ssh.sudo_password_env", "sudo_pw")],
     r"ssh\.sudo_password_env: expected an environment variable name matching"),
    ("both sudo env and file", [("ssh.sudo_password_file", "sudo-pw")],
     r"ssh\.sudo_password_file: give either ssh\.sudo_password_env or ssh\.sudo_password_file, not both"),
    ("sudo password file missing", [("ssh.sudo_password_env", None), ("ssh.sudo_password_file", "nope/pw")],
     r"ssh\.sudo_password_file: file '.*/nope/pw' \(from 'nope/pw'\) does not exist"),
    ("per-host secret env var missing", [("hosts[0].sudo_password_env", UNSET)],
     rf"hosts\[0\]\.sudo_password_env: environment variable {UNSET} is not set \(named by hosts\[0\]\.sudo_password_env\)"),
    ("ssh key file missing", [("ssh.key_file", "~/.ssh/id_missing")],
     r"ssh\.key_file: file '.*/home/\.ssh/id_missing' \(from '~/\.ssh/id_missing'\) does not exist \(null: use only"),
    ("relative path where absolute needed", [("ubuntu.acme.webroot", "var/www/acme")],
     r"ubuntu\.acme\.webroot: expected an absolute path starting with '/' .*got 'var/www/acme'"),
    ("rate 10r/x", [("ubuntu.nginx.rate_limit.per_ip", "10r/x")],
     r"ubuntu\.nginx\.rate_limit\.per_ip: expected a rate like '10r/s' or '600r/m' \(1 to 100000 requests\), got '10r/x'"),
    ("timeout forever", [("ubuntu.nginx.stream_timeout", "forever")],
     r"ubuntu\.nginx\.stream_timeout: expected a duration like '30s', '5m', '24h' or '7d'.*got 'forever'"),
    ("duration without unit as string", [("ubuntu.gateway.sessions.idle_timeout", "30")],
     r"ubuntu\.gateway\.sessions\.idle_timeout: expected a duration .*got '30'"),
    ("invalid email", [("ubuntu.acme.email", "ops.example.com")],
     r"ubuntu\.acme\.email: expected an email address like 'ops@example\.com', got 'ops\.example\.com'"),
    ("missing email", [("ubuntu.acme.email", DELETE)], r"ubuntu\.acme\.email: missing required key \(registration"),
    ("http ACME server", [("ubuntu.acme.server", "http://acme.internal/directory")],
     r"ubuntu\.acme\.server: ACME server must be https, got 'http://acme\.internal/directory'"),
    ("ACME server not a URL", [("ubuntu.acme.server", "zerossl")],
     r"ubuntu\.acme\.server: expected 'letsencrypt', 'letsencrypt-staging' or an https:// ACME directory URL, got 'zerossl'"),
    ("ca_bundle_file missing", [("ubuntu.acme.ca_bundle_file", "ca/root.pem")],
     r"ubuntu\.acme\.ca_bundle_file: file '.*/ca/root\.pem' \(from 'ca/root\.pem'\) does not exist"),
    ("metrics_allow entry not a CIDR", [("ubuntu.nginx.metrics_allow[1]", "10.0.0.0/33")],
     r"ubuntu\.nginx\.metrics_allow\[1\]: expected an IP network like '10\.0\.0\.0/8'.*got '10\.0\.0\.0/33'"),
    ("metrics_allow not a list", [("ubuntu.nginx.metrics_allow", "127.0.0.1")],
     r"ubuntu\.nginx\.metrics_allow: expected a list, each entry an IP network like .*got '127\.0\.0\.1'"),
    ("negative hsts", [("ubuntu.nginx.hsts_max_age", -1)], r"ubuntu\.nginx\.hsts_max_age: expected an integer between 0 and 63072000, got -1"),
    ("bool where int expected", [("ubuntu.nginx.worker_connections", True)],
     r"ubuntu\.nginx\.worker_connections: expected an integer between 16 and 524288, got true"),
    ("unquoted yes for an enum", [("ssh.strict_host_key_checking", True)],
     r"ssh\.strict_host_key_checking: expected one of 'yes', 'accept-new', 'no', got true \(YAML reads unquoted yes"),
    ("enum value unknown", [("ubuntu.gateway.log_level", "verbose")],
     r"ubuntu\.gateway\.log_level: expected one of 'debug', 'info', 'warning', got 'verbose'"),
    ("worker_processes zero", [("ubuntu.nginx.worker_processes", 0)],
     r"ubuntu\.nginx\.worker_processes: expected 'auto' or an integer between 1 and 1024, got 0"),
    ("env var name lowercase", [("ubuntu.gateway.environment", {"api_token": "x"})],
     r"ubuntu\.gateway\.environment\.api_token: invalid environment variable name 'api_token'"),
    ("env value not a string", [("ubuntu.gateway.environment", {"PORT": 3000})],
     r"ubuntu\.gateway\.environment\.PORT: expected a string value .*got 3000"),
    ("env reference not set", [("ubuntu.gateway.environment", {"API_TOKEN": f"env:{UNSET}"})],
     rf"ubuntu\.gateway\.environment\.API_TOKEN: environment variable {UNSET} is not set "
     r"\(named by ubuntu\.gateway\.environment\.API_TOKEN\)"),
    ("body size", [("ubuntu.nginx.client_max_body_size", "4 MB")],
     r"ubuntu\.nginx\.client_max_body_size: expected a size like '512k', '4m' or '1g'.*got '4 MB'"),
    ("empty string", [("ubuntu.gateway.command", "  ")],
     r"ubuntu\.gateway\.command: expected a command.*got an empty list"),
    ("section not a mapping", [("ubuntu.nginx", "fast")], r"ubuntu\.nginx: expected a mapping, got 'fast'"),
    ("user not a string", [("ssh.user", ["a", "b"])], r"ssh\.user: expected a user name \(letters, digits, '\.', '_', '-'\), got a list"),
]


@pytest.mark.parametrize("mutations, pattern", [(m, p) for _, m, p in BAD], ids=[i for i, _, _ in BAD])
def test_bad_settings_are_named(env, mutations, pattern):
    Path("sudo-pw").write_text("pw\n")
    Path("sudo-pw").chmod(0o600)
    with pytest.raises(SettingsError, match=r"(^|\n)settings\.yaml: " + pattern) as exc:
        load_mutated(*mutations)
    # every line names the file and a key
    for line in str(exc.value).splitlines():
        assert re.match(r"settings\.yaml: [\w\[\].]+: ", line), line


def test_bad_table_is_big_and_distinct():
    assert len(BAD) >= 25
    assert len({i for i, _, _ in BAD}) == len(BAD)


# --- the example and the defaults ---------------------------------------------------------


def test_example_loads_with_defaults(env):
    s = load(str(EXAMPLE))
    assert s.path == str(EXAMPLE)
    assert s.raw["hosts"][0]["name"] == "gw1"
    host, nas = s.hosts
    assert (host.name, host.group, host.address, host.domain) == ("gw1", "ubuntu", "203.0.113.10", "mcp.example.com")
    assert host.sudo_password.reveal() == "s3cret-pw" and isinstance(host.sudo_password, Secret)
    assert host.ssh["key_file"] == str(env / "home" / ".ssh" / "id_ed25519")
    assert (nas.name, nas.group, nas.address, nas.domain) == ("nas1", "synology", "192.0.2.20", "loop.example.com")
    assert (nas.ssh["user"], nas.ssh["file_transfer"], nas.ssh["port"]) == ("admin", "scp", 22)
    assert nas.sudo_password.reveal() == "s3cret-pw"  # inherited from ssh.sudo_password_env
    assert s.host("nas1") is nas
    ubuntu = s.group("ubuntu")
    assert ubuntu["nginx"]["stream_timeout"] == 86400
    assert ubuntu["gateway"]["sessions"] == {"max_total": 16, "max_per_client": 4, "idle_timeout": 1800,
                                             "evict_min_idle": 60}
    assert ubuntu["gateway"]["command"] == ["npx", "-y", "@modelcontextprotocol/server-everything"]
    assert ubuntu["gateway"]["memory_max"] == "1g" and ubuntu["gateway"]["tasks_max"] == 512
    assert ubuntu["nginx"]["rate_limit"]["per_ip"] == "20r/s"
    assert ubuntu["nginx"]["worker_processes"] == "auto"
    assert ubuntu["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert ubuntu["acme"]["ca_bundle_file"] is None
    assert ubuntu["nginx"]["metrics_allow"] == ["127.0.0.1/32", "::1/128"]


def test_example_synology_section(env):
    nas = load(str(EXAMPLE)).group("synology")
    assert nas["docker"] == "auto"
    assert nas["bundle_dir"] == "/volume1/mcp-edge"
    assert nas["certificate_conf"] == "/usr/syno/etc/www/certificate/system_default/cert.conf"
    assert (nas["publish_address"], nas["upstream_host"]) == ("127.0.0.1", "127.0.0.1")
    assert nas["patch_entries"] == []
    assert nas["guard_interval"] == 300
    assert nas["nginx"] == {
        "stream_timeout": 86400,
        "client_max_body_size": "4m",
        "rate_limit": {"per_ip": "20r/s", "per_ip_burst": 40, "per_session": "10r/s", "per_session_burst": 20,
                       "streams_per_ip": 50},
        "metrics_allow": ["127.0.0.1/32", "::1/128"],
        "hsts_max_age": 31536000,
        "access": {"bearer_tokens": [], "allow": [], "allowed_origins": None},
    }
    api, mcp = nas["loop_api"], nas["loop_mcp"]
    assert (api["name"], api["host_port"], api["container_port"]) == ("loop-api", 8082, 8081)
    assert (mcp["name"], mcp["host_port"], mcp["container_port"]) == ("loop-mcp", 8085, 8085)
    assert (api["build_context"], api["dockerfile"]) == ("/volume1/docker/loop-api", "Dockerfile")
    assert (mcp["build_context"], mcp["dockerfile"]) == ("/volume1/docker/loop-mcp", "Dockerfile.mcp")
    assert api["volumes"] == [
        "/volume1/LOOP_CORE/vault/LOOP:/vault:rw",
        "/volume1/LOOP_CLevel/vault/loop_exec:/vault/exec:ro",
    ]
    assert mcp["volumes"] == ["/volume1/LOOP_CORE/vault/LOOP:/vault:ro"]
    assert api["environment"]["EXEC_VAULT_DIR"] == "/vault/exec" and "EXEC_VAULT_DIR" not in mcp["environment"]
    for c in (api, mcp):
        assert c["base_image"] == "python:3.11-slim"
        assert (c["restart"], c["health_path"], c["health_timeout"]) == ("unless-stopped", "/health", 90)
        assert c["environment"]["TZ"] == "Asia/Seoul"


def test_synology_is_a_supported_group():
    assert settings.GROUP_SCHEMAS["synology"] is settings.SYNOLOGY_SCHEMA
    assert settings.known_groups() == ["ubuntu", "synology", "control"]
    assert settings.DEFAULTS["synology"]["guard_interval"] == "5m"
    assert settings.DEFAULTS["synology"]["loop_mcp"]["dockerfile"] == "Dockerfile.mcp"
    # the MCP proxy settings are shared: the same fields on both targets, DSM owns the worker settings
    assert set(settings.SYNOLOGY_SCHEMA["nginx"]) == set(settings.MCP_NGINX_FIELDS)
    assert set(settings.MCP_NGINX_FIELDS) < set(settings.UBUNTU_SCHEMA["nginx"])
    for key, field in settings.MCP_NGINX_FIELDS.items():
        assert settings.SYNOLOGY_SCHEMA["nginx"][key] is field and settings.UBUNTU_SCHEMA["nginx"][key] is field
    dotted = [d for d, _ in settings.iter_fields()]
    assert "synology.loop_api.volumes" in dotted and "synology.nginx.rate_limit.per_ip" in dotted
    assert "synology.nginx.worker_processes" not in dotted


def test_example_shows_the_defaults():
    """settings.example.yaml is the contract: each key it shows has that default."""
    data = example()
    chosen = {"ssh.sudo_password_env", "ubuntu.acme.email"}  # no default / an example value
    seen = 0
    for dotted, spec in settings.iter_fields():
        if dotted.startswith("hosts[]") or dotted in chosen:
            continue
        node = data
        for token in dotted.split("."):
            node = node.get(token, DELETE) if isinstance(node, dict) else DELETE
        if node is DELETE:
            assert dotted == "ssh.sudo_password_file"  # shown commented out
            continue
        assert node == spec.default, dotted
        assert spec.doc, dotted
        seen += 1
    assert seen > 30
    assert settings.DEFAULTS["ubuntu"]["nginx"]["stream_timeout"] == "24h"
    assert settings.DEFAULTS["synology"]["nginx"]["stream_timeout"] == "24h"


def test_minimal_file_gets_every_default(env):
    write({"hosts": [SECOND_HOST], "ubuntu": {"acme": {"email": "ops@example.org"}}, "ssh": {"key_file": None}})
    s = load("settings.yaml")
    assert s.group("ubuntu")["nginx"]["stream_timeout"] == 86400
    assert s.group("ubuntu")["gateway"]["working_directory"] == "/var/lib/mcp-edge/gateway"
    host = s.hosts[0]
    assert host.sudo_password is None
    data = s.inventory()["ubuntu"][0][1]
    assert "_sudo_password" not in data and "ssh_key" not in data
    assert data["ssh_user"] == "deploy" and data["ssh_port"] == 22
    # no synology host and no synology section: its defaults are there all the same
    assert s.inventory()["synology"] == []
    assert s.group("synology")["loop_api"]["host_port"] == 8082


def test_synology_only_file_needs_no_section(env):
    nas = {"name": "nas", "group": "synology", "address": "nas.lan", "domain": "loop.example.org"}
    write({"hosts": [nas], "ssh": {"key_file": None}})
    s = load("settings.yaml")
    assert s.group("synology")["guard_interval"] == 300
    assert s.group("synology")["loop_mcp"]["volumes"] == ["/volume1/LOOP_CORE/vault/LOOP:/vault:ro"]
    assert s.group("ubuntu")["acme"]["email"] is None  # no ubuntu host: the unused section is not required
    [(name, data)] = s.inventory()["synology"]
    assert name == "nas" and s.inventory()["ubuntu"] == []
    assert data["mcp_edge_host"] == {"name": "nas", "group": "synology", "domain": "loop.example.org"}


def test_synology_normalization(env, monkeypatch):
    monkeypatch.setenv("LOOP_TOKEN", "tok-456")
    s = load_mutated(
        ("hosts[1].domain", "Loop.Example.COM"),
        ("synology.docker", "/usr/local/bin/docker"),
        ("synology.bundle_dir", "/volume1//mcp-edge/"),
        ("synology.patch_entries", ["DSM.Example.com"]),
        ("synology.guard_interval", "30m"),
        ("synology.nginx.stream_timeout", "7d"),
        ("synology.nginx.client_max_body_size", "8M"),
        ("synology.loop_api.volumes", ["/volume1/a:/a", "/volume1/b:/b:ro"]),
        ("synology.loop_api.build_context", "/volume1/docker/./loop-api/"),
        ("synology.loop_api.environment", {"API_TOKEN": "env:LOOP_TOKEN", "TZ": "UTC"}),
        ("synology.loop_mcp.restart", "no"),
        ("synology.loop_mcp.health_timeout", "2m"),
    )
    assert s.host("nas1").domain == "loop.example.com"
    nas = s.group("synology")
    assert nas["docker"] == "/usr/local/bin/docker"
    assert nas["bundle_dir"] == "/volume1/mcp-edge"
    assert nas["patch_entries"] == ["dsm.example.com"]
    assert nas["guard_interval"] == 1800
    assert nas["nginx"]["stream_timeout"] == 7 * 86400 and nas["nginx"]["client_max_body_size"] == "8m"
    assert nas["loop_api"]["volumes"] == ["/volume1/a:/a:rw", "/volume1/b:/b:ro"]
    assert nas["loop_api"]["build_context"] == "/volume1/docker/loop-api"
    env_map = nas["loop_api"]["environment"]
    assert {k: settings.reveal(v) for k, v in env_map.items()} == {"API_TOKEN": "tok-456", "TZ": "UTC"}
    assert isinstance(env_map["API_TOKEN"], Secret) and not isinstance(env_map["TZ"], Secret)
    assert "tok-456" not in repr(nas)
    assert nas["loop_mcp"]["restart"] == "no" and nas["loop_mcp"]["health_timeout"] == 120
    # the ubuntu section is untouched by the synology one
    assert s.group("ubuntu")["nginx"]["stream_timeout"] == 86400


def test_group_returns_a_copy(env):
    s = load(str(EXAMPLE))
    s.group("synology")["loop_api"]["volumes"].append("/x:/y:rw")
    assert len(s.group("synology")["loop_api"]["volumes"]) == 2


@pytest.mark.parametrize("dotted", ["synology.loop_api", "synology.loop_mcp", "ubuntu.gateway", "ubuntu.gateway.sessions"])
def test_checked_subsection_not_a_mapping(env, dotted):
    pattern = rf"(^|\n)settings\.yaml: {re.escape(dotted)}: expected a mapping, got 'fast'"
    with pytest.raises(SettingsError, match=pattern):
        load_mutated((dotted, "fast"))


def test_normalization(env, monkeypatch):
    monkeypatch.setenv("GATEWAY_TOKEN", "tok-123")
    (env / "ca.pem").write_text("PEM\n")
    s = load_mutated(
        ("hosts[0].domain", "MCP.Example.COM"),
        ("ubuntu.nginx.metrics_allow", ["10.1.2.3", "10.0.0.5/8", "2001:db8::1"]),
        ("ubuntu.nginx.stream_timeout", 600),
        ("ubuntu.gateway.sessions.idle_timeout", "7d"),
        ("ubuntu.acme.server", "letsencrypt-staging"),
        ("ubuntu.acme.ca_bundle_file", "ca.pem"),
        ("ubuntu.acme.webroot", "/var/www//acme/"),
        ("ubuntu.gateway.environment", {"TOKEN": "env:GATEWAY_TOKEN", "MODE": "fast"}),
        ("ubuntu.node.source", "nodesource"),
        ("ubuntu.node.nodesource_major", 22),
        ("ubuntu.gateway.command", "node /opt/server.js --port=0"),
    )
    u = s.group("ubuntu")
    assert s.hosts[0].domain == "mcp.example.com"
    assert u["nginx"]["metrics_allow"] == ["10.1.2.3/32", "10.0.0.0/8", "2001:db8::1/128"]
    assert u["nginx"]["stream_timeout"] == 600
    assert u["gateway"]["sessions"]["idle_timeout"] == 7 * 86400
    assert u["gateway"]["command"] == ["node", "/opt/server.js", "--port=0"]
    assert u["node"] == {"source": "nodesource", "nodesource_major": 22}
    assert u["acme"]["server"] == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert u["acme"]["ca_bundle_file"] == str(env / "ca.pem")
    assert u["acme"]["webroot"] == "/var/www/acme"
    env_map = u["gateway"]["environment"]
    assert {k: settings.reveal(v) for k, v in env_map.items()} == {"TOKEN": "tok-123", "MODE": "fast"}
    assert isinstance(env_map["TOKEN"], Secret) and not isinstance(env_map["MODE"], Secret)
    assert "tok-123" not in repr(u)


def test_per_host_ssh_overrides_and_inventory(env):
    (env / "pw2").write_text("file-pw\n")
    (env / "pw2").chmod(0o600)
    s = load_mutated(
        ("hosts[1]", dict(SECOND_HOST, port=2222, user="admin", sudo_password_file="pw2",
                          strict_host_key_checking="accept-new", file_transfer="scp")),
    )
    inv = s.inventory()
    assert set(inv) == {"ubuntu", "synology", "control"} and inv["synology"] == []  # gw2 replaced nas1
    (n1, d1), (n2, d2) = inv["ubuntu"]
    assert (n1, d1["ssh_port"], d1["ssh_user"], d1["_sudo_password"].reveal()) == ("gw1", 22, "deploy", "s3cret-pw")
    assert (n2, d2["ssh_port"], d2["ssh_user"], d2["_sudo_password"].reveal()) == ("gw2", 2222, "admin", "file-pw")
    assert d2["ssh_strict_host_key_checking"] == "accept-new" and d2["ssh_file_transfer_protocol"] == "scp"
    assert d2["ssh_hostname"] == "203.0.113.11"
    assert d2["ssh_key"] == str(env / "home" / ".ssh" / "id_ed25519")
    assert d2["ssh_known_hosts_file"] == str(env / "home" / ".ssh" / "known_hosts")
    assert d2["mcp_edge_host"] == {"name": "gw2", "group": "ubuntu", "domain": "mcp2.example.com"}
    assert type(d2["mcp_edge_host"]) is dict
    # the host's file replaced the top-level env source
    assert s.host("gw2").ssh["sudo_password_env"] is None
    assert s.host("gw2").ssh["sudo_password_file"] == str(env / "pw2")


def test_passwordless_sudo_with_null(env, monkeypatch):
    monkeypatch.delenv("MCP_EDGE_SUDO_PASSWORD")
    s = load_mutated(("ssh.sudo_password_env", None))
    assert s.hosts[0].sudo_password is None


def test_empty_secret_env_is_an_error(env, monkeypatch):
    monkeypatch.setenv("MCP_EDGE_SUDO_PASSWORD", "")
    with pytest.raises(SettingsError, match=r"settings\.yaml: ssh\.sudo_password_env: environment variable "
                                            r"MCP_EDGE_SUDO_PASSWORD is empty"):
        load_mutated()


def test_all_problems_are_reported_together(env):
    with pytest.raises(SettingsError) as exc:
        load_mutated(("ssh.port", 0), ("ubuntu.nginx.rate_limit.per_ip", "10r/x"), ("hosts[0].group", "windows"))
    assert len(exc.value.problems) == 3
    assert str(exc.value) == "\n".join(exc.value.problems)
    assert isinstance(exc.value, ValueError)


def test_broken_default_is_marked_as_default(env):
    os.remove(env / "home" / ".ssh" / "id_ed25519")
    with pytest.raises(SettingsError, match=r"settings\.yaml: ssh\.key_file: file .* does not exist .*"
                                            r"\(the default value of ssh\.key_file\)"):
        load_mutated(("ssh.key_file", DELETE))


# --- file-level errors -------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(env):
    Path("settings.yaml").write_text("ssh:\n  user: deploy\n  port: [22\nhosts: []\n")
    with pytest.raises(SettingsError, match=r"^settings\.yaml: line \d+, column \d+: invalid YAML: "):
        load("settings.yaml")


def test_yaml_duplicate_key(env):
    Path("settings.yaml").write_text("ssh:\n  port: 22\n  port: 2222\n")
    with pytest.raises(SettingsError, match=r"^settings\.yaml: line 3, column 3: invalid YAML: duplicate key 'port' "
                                            r"\(first given on line 2\)"):
        load("settings.yaml")


def test_top_level_list(env):
    Path("settings.yaml").write_text("- ssh\n- hosts\n")
    with pytest.raises(SettingsError, match=r"^settings\.yaml: expected a mapping of sections "
                                            r"\(ssh, hosts, ubuntu, synology, control\) at the top level, got a list"):
        load("settings.yaml")


def test_empty_file(env):
    Path("settings.yaml").write_text("# nothing\n")
    with pytest.raises(SettingsError, match=r"^settings\.yaml: the file is empty"):
        load("settings.yaml")


def test_missing_file(env):
    with pytest.raises(SettingsError, match=r"^nope\.yaml: file not found"):
        load("nope.yaml")


def test_local_paths_are_relative_to_the_settings_file(env, monkeypatch):
    sub = env / "conf"
    sub.mkdir()
    (sub / "ca.pem").write_text("PEM\n")
    data = example()
    data["ubuntu"]["acme"]["ca_bundle_file"] = "ca.pem"
    (sub / "settings.yaml").write_text(yaml.safe_dump(data))
    s = load(sub / "settings.yaml")
    assert s.group("ubuntu")["acme"]["ca_bundle_file"] == str(sub / "ca.pem")
    assert s.path == str(sub / "settings.yaml")


# --- current() / use() ------------------------------------------------------------------------


def test_use_and_current(env, monkeypatch):
    write(example(), "other.yaml")
    monkeypatch.setenv(settings.ENV_VAR, "other.yaml")
    s = settings.current()
    assert s.path == "other.yaml" and settings.current() is s
    write(example(), "settings.yaml")
    t = settings.use("settings.yaml")
    assert settings.current() is t and t is not s


def test_current_defaults_to_settings_yaml(env):
    with pytest.raises(SettingsError, match=r"^settings\.yaml: file not found"):
        settings.current()


# --- secrets ----------------------------------------------------------------------------------


def test_secret_never_prints_itself():
    secret = Secret("hunter2", "env:PW")
    assert secret.reveal() == "hunter2" and secret.source == "env:PW"
    for shown in (repr(secret), str(secret), f"{secret}", "%s" % secret, secret.to_json()):
        assert shown == "<secret>"
    assert "hunter2" not in repr({"pw": secret}) and "hunter2" not in repr([secret])
    assert copy.deepcopy(secret) is secret and secret == Secret("hunter2") and secret != "hunter2"
    assert secret.digest().startswith("sha256:") and "hunter2" not in secret.digest()
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    # pyinfra's JSON output (debug-inventory, --debug-operations) goes through json_encode
    from pyinfra_cli.util import json_encode
    assert "hunter2" not in json.dumps({"_sudo_password": secret, "env": [secret]}, default=json_encode)


def test_host_repr_does_not_leak_the_sudo_password(env):
    s = load(str(EXAMPLE))
    assert "s3cret-pw" not in repr(s.hosts) and "s3cret-pw" not in repr(s.inventory())
    assert s.inventory()["ubuntu"][0][1]["_sudo_password"].reveal() == "s3cret-pw"
    nas = s.inventory()["synology"][0][1]
    assert nas["_sudo_password"].reveal() == "s3cret-pw"
    assert (nas["ssh_user"], nas["ssh_file_transfer_protocol"]) == ("admin", "scp")


# --- extensibility ----------------------------------------------------------------------------


@pytest.fixture
def registry():
    """Undo settings.add_section() after the test: the table is restored as it was."""
    saved = dict(settings.SECTIONS)
    yield
    settings.SECTIONS.clear()
    settings.SECTIONS.update(saved)


def test_registered_group_and_section(env, registry):
    settings.add_section("freebsd", settings.Section(
        {"jail": {"enabled": settings.Field(settings.Bool(), True, "run the gateway in a jail")}},
        group=True,
    ))
    settings.add_section("reporting", settings.Section(
        {"parallel": settings.Field(settings.Int(min=1), 5, "hosts deployed at once")}, group=False
    ))
    s = load_mutated(("hosts[2]", {"name": "bsd", "group": "freebsd", "address": "bsd.lan"}),
                     ("freebsd", {"jail": {"enabled": False}}))
    assert s.group("freebsd") == {"jail": {"enabled": False}}
    assert s.section("reporting") == {"parallel": 5}
    assert [n for n, _ in s.inventory()["freebsd"]] == ["bsd"]
    assert [n for n, _ in s.inventory()["synology"]] == ["nas1"]
    assert settings.known_groups() == ["ubuntu", "synology", "control", "freebsd"]
    assert settings.DEFAULTS["freebsd"] == {"jail": {"enabled": True}}
    assert ("reporting.parallel", settings.SECTIONS["reporting"].schema["parallel"]) in list(settings.iter_fields())


def test_registry_fixture_leaves_synology_alone(registry):
    assert settings.GROUP_SCHEMAS["synology"] is settings.SYNOLOGY_SCHEMA
    assert "freebsd" not in settings.SECTIONS and "reporting" not in settings.SECTIONS


def test_bool_given_as_yes_string(env, registry):
    settings.add_section("freebsd", settings.Section(
        {"jail": {"enabled": settings.Field(settings.Bool(), True, "run it")}}, group=True
    ))
    with pytest.raises(SettingsError, match=r"settings\.yaml: freebsd\.jail\.enabled: expected true or false "
                                            r"\(an unquoted YAML boolean\), got 'yes'"):
        load_mutated(("freebsd", {"jail": {"enabled": "yes"}}))


def test_group_without_schema_is_a_key_error(env):
    s = load(str(EXAMPLE))
    assert s.group("synology")["docker"] == "auto"
    with pytest.raises(KeyError, match=r"no settings section for group 'windows' "
                                       r"\(groups with one: ubuntu, synology, control\)"):
        s.group("windows")
