"""The bench's machines: Pebble, the Ubuntu-like targets and the DSM simulator, started and provisioned."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from .docker import bench_id, built_image, container_current, container_image, network_gateway
from .layout import (
    _SUFFIX,
    ACME_ALIAS,
    ACME_CONTAINER,
    ACME_MGMT_PORT,
    ACME_PORT,
    APPS,
    DNS_MGMT_PORT,
    HOSTS_BEGIN,
    HOSTS_END,
    IMAGES,
    LEGACY_DOMAIN,
    LEGACY_UUID,
    NETWORK,
    STATE,
    SUITE,
    TARGETS,
    VOLUME,
    Target,
    log,
    run,
    target_exec,
)
from .state import _write, sudo_password

SYSTEMD_RUN = [
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
]


def _wait(what: str, check, timeout: float = 60.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            res = check()
            if res:
                return res
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}: {last}")


def start_acme() -> None:
    image = built_image("acme")
    if container_current(ACME_CONTAINER, image):
        return
    subprocess.run(["docker", "rm", "-f", ACME_CONTAINER], capture_output=True)
    log("starting Pebble")
    run("docker", "run", "-d", "--name", ACME_CONTAINER, "--network", NETWORK,
        "--network-alias", ACME_ALIAS, "--label", "mcp-edge.bench=acme", "--label", f"mcp-edge.bench-id={bench_id()}",
        "-p", f"127.0.0.1:{ACME_PORT}:14000", "-p", f"127.0.0.1:{ACME_MGMT_PORT}:15000",
        "-p", f"127.0.0.1:{DNS_MGMT_PORT}:8055",
        "-v", f"{STATE / 'pebble.json'}:/etc/pebble/pebble.json:ro",
        "-v", f"{STATE / 'ca'}:/etc/pebble/tls:ro", image)
    ctx = ssl.create_default_context(cafile=str(STATE / "ca" / "ca.pem"))
    _wait("Pebble directory", lambda: urllib.request.urlopen(
        f"https://localhost:{ACME_PORT}/dir", context=ctx, timeout=2).status == 200)


def pebble_roots() -> Path:
    """Pebble makes a new root on every start: fetch the one in force now."""
    ctx = ssl.create_default_context(cafile=str(STATE / "ca" / "ca.pem"))
    pem = urllib.request.urlopen(f"https://localhost:{ACME_MGMT_PORT}/roots/0", context=ctx, timeout=5).read()
    out = STATE / "pebble-root.pem"
    out.write_bytes(pem)
    return out


def register_dns(domain: str, ip: str) -> None:
    # add-a appends: clear first, or every `up` adds an address until the DNS
    # answer overflows and validation fails ("dns: overflowing header size").
    clear = urllib.request.Request(f"http://127.0.0.1:{DNS_MGMT_PORT}/clear-a", method="POST",
                                   data=json.dumps({"host": domain}).encode())
    _wait("challtestsrv", lambda: urllib.request.urlopen(clear, timeout=2).status == 200, timeout=30)
    body = json.dumps({"host": domain, "addresses": [ip]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{DNS_MGMT_PORT}/add-a", data=body, method="POST")
    _wait("challtestsrv", lambda: urllib.request.urlopen(req, timeout=2).status == 200, timeout=30)


def _ssh_banner(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        return s.recv(64).startswith(b"SSH-")


def start_target(t: Target, fresh: bool = False) -> None:
    image = built_image(t.image)
    if not fresh and container_current(t.container, image):
        return
    subprocess.run(["docker", "rm", "-f", t.container], capture_output=True)
    extra = []
    if t.image == "dsm":
        # A bare NAS: none of the containers or images the deploy makes.
        for name in ("loop-api", "loop-mcp"):
            subprocess.run(["docker", "rm", "-f", f"{name}{_SUFFIX}", f"{name}{_SUFFIX}.mcp-edge-previous"],
                           capture_output=True)
            subprocess.run(["docker", "image", "rm", "-f", f"{name}{_SUFFIX}:mcp-edge"], capture_output=True)
        prepare_volume()
        docker_cli = Path(shutil.which("docker") or "/usr/bin/docker").resolve()
        # The NAS's Container Manager CLI drives the bench's Docker daemon (test-bench.md).
        extra = ["-v", "/var/run/docker.sock:/var/run/docker.sock",
                 "-v", f"{docker_cli}:/var/packages/ContainerManager/target/usr/bin/docker:ro",
                 "-v", "/volume1:/volume1", "--label", "mcp-edge.simulation=synology-dsm-7"]
    log(f"starting {t.container} ({'DSM simulator' if t.image == 'dsm' else f'bare {SUITE}'}, systemd)")
    run("docker", "run", "-d", "--name", t.container, "--hostname", t.name, "--network", NETWORK,
        "--label", "mcp-edge.bench=target", "--label", f"mcp-edge.bench-id={bench_id()}", *SYSTEMD_RUN, *extra,
        "-p", f"127.0.0.1:{t.ssh_port}:22", "-p", f"{t.public_ip}:80:80", "-p", f"{t.public_ip}:443:443",
        image)
    _wait(f"systemd in {t.container}", lambda: subprocess.run(
        ["docker", "exec", t.container, "systemctl", "is-system-running", "--wait"],
        capture_output=True, text=True).stdout.strip() in ("running", "degraded"), timeout=90)
    # Password and key go through stdin: never on a command line.
    run("docker", "exec", "-i", t.container, "chpasswd", input=f"{t.user}:{sudo_password()}\n")
    pub = (STATE / "ssh" / "id_ed25519.pub").read_text()
    keys = f"/home/{t.user}/.ssh/authorized_keys"
    run("docker", "exec", "-i", t.container, "sh", "-c",
        f"cat > {keys} && chown {t.user}:{t.user} {keys} && chmod 600 {keys}", input=pub)
    if t.image == "dsm":
        provision_dsm(t)
    _wait(f"sshd on 127.0.0.1:{t.ssh_port}", lambda: _ssh_banner(t.ssh_port))


def prepare_volume() -> None:
    """The NAS's /volume1 data and the stand-in apps' sources (the operator's code).
    /volume1 outlives the container: a bare NAS has no bundle directory of an earlier run."""
    shutil.rmtree(Path(VOLUME, "mcp-edge"), ignore_errors=True)
    for d in ("LOOP_CORE/vault/LOOP/.oauth", "LOOP_CLevel/vault/loop_exec"):
        Path(VOLUME, d).mkdir(parents=True, exist_ok=True)
    Path(VOLUME, "LOOP_CORE/vault/LOOP/welcome.md").write_text("# LOOP vault (bench)\n")
    Path("/volume1/.mcp-edge-bench").write_text("bench data for the DSM simulator; safe to delete\n")
    for app in ("loop-api", "loop-mcp"):
        dest = Path(VOLUME, "docker", app)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(APPS / app, dest)


def dsm_leaf(names: list[str]) -> tuple[str, str]:
    """A certificate for the NAS's hostnames signed by the bench CA (DSM's own certificate)."""
    ca = STATE / "ca"
    key, csr, crt, ext = (ca / f"dsm.{x}" for x in ("key", "csr", "pem", "ext"))
    if not crt.exists():
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(csr))
        _write(ext, "subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
        run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.pem"), "-CAkey", str(ca / "ca.key"),
            "-CAcreateserial", "-days", "825", "-extfile", str(ext), "-out", str(crt))
    return crt.read_text() + (ca / "ca.pem").read_text(), key.read_text()


def provision_dsm(t: Target) -> None:
    """What a NAS already has before the bundle: DSM's certificate, a reverse-proxy
    entry for the legacy MCP hostname (WebSocket preset, 60 s timeouts), rendered."""
    fullchain, key = dsm_leaf([t.domain, LEGACY_DOMAIN])
    cert_dir = "/usr/syno/etc/certificate/system/default"
    conf = f"ssl_certificate {cert_dir}/fullchain.pem;\nssl_certificate_key {cert_dir}/privkey.pem;\n"
    store = json.loads((IMAGES / "dsm" / "files" / "ReverseProxy.json").read_text())
    store[LEGACY_UUID]["frontend"]["fqdn"] = LEGACY_DOMAIN
    store[LEGACY_UUID]["backend"]["fqdn"] = network_gateway()
    script = f"""set -e
mkdir -p {cert_dir} /usr/syno/etc/www/certificate/system_default /usr/syno/etc/www/certificate/ReverseProxy_{LEGACY_UUID}
cat > {cert_dir}/fullchain.pem <<'PEM'
{fullchain}PEM
cat > {cert_dir}/privkey.pem <<'PEM'
{key}PEM
chmod 600 {cert_dir}/privkey.pem
printf '{conf}' > /usr/syno/etc/www/certificate/system_default/cert.conf
printf '{conf}' > /usr/syno/etc/www/certificate/ReverseProxy_{LEGACY_UUID}/cert.conf
cat > /usr/syno/etc/www/ReverseProxy.json <<'JSON'
{json.dumps(store, indent=2)}
JSON
/usr/syno/bin/synow3tool --gen-all
systemctl reload nginx || systemctl restart nginx
"""
    run("docker", "exec", "-i", t.container, "sh", input=script)


def dsm_regenerate(t: Target) -> None:
    """What DSM does on a UI save, reboot or update (dsm.md §2): re-render the
    reverse-proxy file from ReverseProxy.json, dropping hand edits, and reload."""
    target_exec(t, "sh", "-c", "/usr/syno/bin/synow3tool --gen-all && /usr/syno/bin/synosystemctl reload nginx")
    time.sleep(1.5)  # a reload returns before nginx's new workers take over


def write_known_hosts() -> None:
    lines = []
    for t in TARGETS.values():
        if container_image(t.container):
            key = run("docker", "exec", t.container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
            lines.append(f"[127.0.0.1]:{t.ssh_port} {key[0]} {key[1]}")
    _write(STATE / "known_hosts", "\n".join(lines) + "\n", 0o600)


def without_hosts_block(text: str) -> str:
    """/etc/hosts text without this slot's managed block. Markers match whole
    lines: slot 0's marker is a prefix of the other slots' markers."""
    lines = text.splitlines(keepends=True)
    begin, end = HOSTS_BEGIN + "\n", HOSTS_END + "\n"
    if begin not in lines:
        return text
    start = lines.index(begin)
    stop = lines.index(end, start) + 1 if end in lines[start:] else len(lines)
    return "".join(lines[:start] + lines[stop:])


def write_etc_hosts() -> None:
    """Resolve the bench domains to their loopback addresses (managed block)."""
    path = Path("/etc/hosts")
    text = without_hosts_block(path.read_text())
    names = [(t.public_ip, t.domain) for t in TARGETS.values()] + [(TARGETS["synology"].public_ip, LEGACY_DOMAIN)]
    block = "\n".join([HOSTS_BEGIN] + [f"{ip} {name}" for ip, name in names] + [HOSTS_END])
    new = text.rstrip("\n") + "\n" + block + "\n"
    if new != path.read_text():
        path.write_text(new)
