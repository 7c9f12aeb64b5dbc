"""The fact parsers: what each fact makes of the output its command prints.

Outputs are the ones the real tools print (nginx -v, certbot's renewal file,
docker inspect, ss, df, synowebapi); where the command is plain POSIX sh it is
also run here for real.
"""

import json
import subprocess

import pytest

from mcpedge.facts.certbot import CertbotCertificate
from mcpedge.facts.docker import DirectoryDigest, DockerContainerState, DockerImageLabel, DockerPublishedPorts
from mcpedge.facts.dsm import (
    DsmReverseProxyEntries,
    DsmScheduledTasks,
    DsmVersion,
    GuardStatus,
    NasStatus,
    SynologyDocker,
)
from mcpedge.facts.nginx import NginxVersion
from mcpedge.facts.preflight import FreeDisk, ListeningPorts, SudoUser
from mcpedge.facts.secrets import MaskedEnvFile


def sh(command) -> list[str]:
    text = command if isinstance(command, str) else command.get_raw_value()
    return subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.mark.parametrize("line, version", [("nginx version: nginx/1.26.3", (1, 26, 3)),
                                           ("nginx version: nginx/1.22.1 (Debian)", (1, 22, 1)),
                                           ("bash: nginx: command not found", None)])
def test_nginx_version(line, version):
    assert NginxVersion().process([line]) == version
    assert NginxVersion.stable  # kept across commands once present (pyinfra_compat.fact_cache)


def test_certbot_certificate():
    out = ["server = https://acme.example/dir", "webroot_path = /var/www/acme,", "__files_ok=1",
           "__domains=b.example.com a.example.com"]
    assert CertbotCertificate().process(out) == {"server": "https://acme.example/dir", "webroot": "/var/www/acme",
                                                 "files_ok": True, "domains": ["a.example.com", "b.example.com"]}
    assert CertbotCertificate().process([]) is None
    missing = CertbotCertificate().process(["server = https://acme.example/dir"])
    assert missing["files_ok"] is False and missing["domains"] == []


def test_dsm_version():
    assert DsmVersion().process(['majorversion="7"', 'minorversion="2"', 'productversion="7.2.2"']) == (7, 2)
    assert DsmVersion().process([]) is None


def test_synology_docker_finds_the_first_executable(tmp_path):
    assert SynologyDocker().process(["/usr/local/bin/docker"]) == "/usr/local/bin/docker"
    assert SynologyDocker().process([]) is None


def test_reverse_proxy_entries():
    store = {"u1": {"description": "app", "frontend": {"fqdn": "app.example.com", "port": 443}},
             "version": 3, "u2": {"no": "frontend"}}
    assert DsmReverseProxyEntries().process(json.dumps(store).splitlines()) == [
        {"uuid": "u1", "description": "app", "fqdn": "app.example.com", "port": 443}]
    assert DsmReverseProxyEntries().process(["not json"]) == []


def test_scheduled_tasks_merge_both_schedulers():
    out = [json.dumps({"data": {"tasks": [{"id": 3, "name": "mcp-edge guard"}]}}), "",
           json.dumps({"data": {"events": [{"task_name": "mcp-edge guard (boot)"}]}}), "garbage"]
    assert DsmScheduledTasks().process(out) == {"tasks": [{"id": 3, "name": "mcp-edge guard"}],
                                                "events": [{"task_name": "mcp-edge guard (boot)"}]}


def test_guard_status():
    assert GuardStatus().process(["__no_guard"]) is None
    assert GuardStatus().process(["usage: mcp-edge-guard check|apply", "__failed"]) is None  # an older guard: apply
    assert GuardStatus().process(["__end"]) == []
    assert GuardStatus().process(["/etc/nginx/conf.d/http.mcp-edge-site.conf", "__end"]) == [
        "/etc/nginx/conf.d/http.mcp-edge-site.conf"]


def test_nas_status():
    out = ["/loop-api running healthy 2026-12-01T10:00:00Z loop-api:mcp-edge", "/loop-mcp absent"]
    assert NasStatus().process(out) == {
        "loop-api": {"status": "running", "health": "healthy", "started_at": "2026-12-01T10:00:00Z",
                     "image": "loop-api:mcp-edge"},
        "loop-mcp": {"status": "absent"}}


def test_docker_image_and_container():
    assert DockerImageLabel().process(["sha256:abc 0123456789abcdef"]) == {"id": "sha256:abc", "label": "0123456789abcdef"}
    assert DockerImageLabel().process(["sha256:abc "]) == {"id": "sha256:abc", "label": None}
    assert DockerImageLabel().process([""]) is None
    state = DockerContainerState().process(["running abc sha256:img 2026-12-01T10:00:00Z healthy"])
    assert state == {"status": "running", "spec": "abc", "image": "sha256:img", "started_at": "2026-12-01T10:00:00Z",
                     "health": "healthy"}


def test_published_ports():
    out = ["loop-api 127.0.0.1:8082->8081/tcp", "other 0.0.0.0:8085->80/tcp, [::]:8085->80/tcp", "none "]
    assert DockerPublishedPorts().process(out) == {8082: [["loop-api", "127.0.0.1"]],
                                                   8085: [["other", "0.0.0.0"], ["other", "::"]]}


def test_directory_digest_is_stable_and_sees_a_change(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c").write_text("2")
    fact = DirectoryDigest()
    first = fact.process(sh(fact.command(path=str(tmp_path))))
    assert first and first == fact.process(sh(fact.command(path=str(tmp_path))))
    (tmp_path / "b" / "c").write_text("3")
    assert fact.process(sh(fact.command(path=str(tmp_path)))) != first
    assert fact.process(sh(fact.command(path=str(tmp_path / "missing")))) is None


def test_sudo_user():
    assert SudoUser().process(["root"]) == "root"
    assert SudoUser().process([]) is None


def test_free_disk_reads_the_nearest_existing_parent(tmp_path):
    fact = FreeDisk()
    result = fact.process(sh(fact.command(paths=[str(tmp_path / "not" / "yet"), "/"])))
    assert set(result) == {str(tmp_path / "not" / "yet"), "/"}
    assert all(v["free"] > 0 and v["mount"].startswith("/") for v in result.values())


def test_listening_ports():
    out = ["0.0.0.0:443 nginx root", "[::]:80 nginx root", "127.0.0.1:8082 docker-proxy root",
           "127.0.0.1:9 - 1001", "__end"]
    assert ListeningPorts().process(out) == [
        {"port": 443, "address": "0.0.0.0", "process": "nginx", "user": "root"},
        {"port": 80, "address": "::", "process": "nginx", "user": "root"},
        {"port": 8082, "address": "127.0.0.1", "process": "docker-proxy", "user": "root"},
        {"port": 9, "address": "127.0.0.1", "process": "", "user": "1001"}]


def test_masked_env_file_masks_secret_lines_on_the_host(tmp_path):
    path = tmp_path / "server.env"
    path.write_text('API_TOKEN="s3cret"\nMODE="fast"\n')
    fact = MaskedEnvFile()
    text = fact.process(sh(fact.command(path=str(path), names=("API_TOKEN",))))
    assert "s3cret" not in text and text.startswith("API_TOKEN=<masked sha256:") and 'MODE="fast"\n' in text
    again = fact.process(sh(fact.command(path=str(path), names=("API_TOKEN",))))
    assert again == text  # the same digest: a changed secret shows as a changed digest
    assert fact.process(sh(fact.command(path=str(tmp_path / "none"), names=()))) is None
