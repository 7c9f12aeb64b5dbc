"""The local test bench: real Linux targets in containers, a real ACME CA.

Everything is built locally from Debian packages (debootstrap + docker import),
cached by a hash of its recipe, and reached only over loopback or the bench's
own Docker network:

- ``mcp-edge-acme``: Pebble + pebble-challtestsrv (DNS for the validation
  authority), its TLS listener signed by a throw-away bench CA.
- ``mcp-edge-gw1``: a bare Debian trixie host (systemd as PID 1, sshd, a sudo
  user whose sudo needs a password); SSH on 127.0.0.1:2222, HTTP(S) on
  127.0.0.2:80/443, resolved as ``mcp.sandbox.test`` through a managed block in
  /etc/hosts.

State (keys, CA, generated settings, endpoints.json) lives in ``.sandbox/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".sandbox"
IMAGES = Path(__file__).resolve().parent / "images"
# Several benches can run side by side (one per checkout): slot N gets its own
# container names, network, loopback addresses, ports and domains.
SLOT = int(os.environ.get("MCP_EDGE_BENCH_SLOT", "0"))
_SUFFIX = f"-s{SLOT}" if SLOT else ""
_DOMAIN_SUFFIX = f"s{SLOT}.sandbox.test" if SLOT else "sandbox.test"
NETWORK = f"mcp-edge-bench{_SUFFIX}"
ACME_CONTAINER = f"mcp-edge-acme{_SUFFIX}"
ACME_ALIAS = "acme.bench"
ACME_DIRECTORY = f"https://{ACME_ALIAS}:14000/dir"
ACME_PORT, ACME_MGMT_PORT, DNS_MGMT_PORT = 14000 + SLOT, 15000 + SLOT, 8055 + SLOT
DEBIAN_MIRROR = os.environ.get("MCP_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "trixie"
HOSTS_BEGIN = f"# BEGIN mcp-edge sandbox{_SUFFIX}"
HOSTS_END = f"# END mcp-edge sandbox{_SUFFIX}"


@dataclass(frozen=True)
class Target:
    group: str
    name: str
    container: str
    ssh_port: int
    public_ip: str
    domain: str
    image: str
    user: str = "deploy"

    @property
    def url(self) -> str:
        return f"https://{self.domain}"


TARGETS = {
    "ubuntu": Target("ubuntu", "gw1", f"mcp-edge-gw1{_SUFFIX}", 2222 + 10 * SLOT, f"127.0.{SLOT}.2",
                     f"mcp.{_DOMAIN_SUFFIX}", "target"),
    "synology": Target("synology", "nas1", f"mcp-edge-nas1{_SUFFIX}", 2223 + 10 * SLOT, f"127.0.{SLOT}.3",
                       f"loop.{_DOMAIN_SUFFIX}", "dsm", user="admin"),
}
# The DSM simulator's existing reverse-proxy entry (patch mode) and its data.
LEGACY_DOMAIN = f"mcp-legacy.{_DOMAIN_SUFFIX}"
LEGACY_UUID = "7d1c4b0a-5f2e-4d8b-9a31-2c6e0f1b7a55"
# /volume1 is shared with sibling containers (bind mounts resolve on the host).
VOLUME = "/volume1" if not SLOT else f"/volume1/bench-s{SLOT}"
APPS = Path(__file__).resolve().parent / "apps"
# Opt-in extra Ubuntu-like targets (bench/ measures converging several hosts at
# once): gw2..gw8, SSH on the slot's ports after the NAS's and the drift control
# host's (tests/bench/control.py: +2, 127.0.SLOT.4), HTTPS on 127.0.SLOT.5..11.
MAX_EXTRA_TARGETS = 7


def _extra_target(n: int) -> Target:
    return Target("ubuntu", f"gw{n}", f"mcp-edge-gw{n}{_SUFFIX}", 2222 + 10 * SLOT + n + 1, f"127.0.{SLOT}.{n + 3}",
                  f"gw{n}.{_DOMAIN_SUFFIX}", "target")


def set_extra_targets(count: int) -> list[Target]:
    """Use ``count`` (0..7) extra targets from now on; returns the ones dropped,
    which the caller removes (remove_targets)."""
    if not 0 <= count <= MAX_EXTRA_TARGETS:
        raise ValueError(f"extra targets: 0..{MAX_EXTRA_TARGETS}, got {count}")
    dropped = [t for key, t in TARGETS.items() if key.startswith("ubuntu-") and int(t.name[2:]) > count + 1]
    for t in dropped:
        del TARGETS[f"ubuntu-{t.name[2:]}"]
    for n in range(2, count + 2):
        TARGETS.setdefault(f"ubuntu-{n}", _extra_target(n))
    return dropped


def remove_targets(targets: list[Target]) -> None:
    for t in targets:
        subprocess.run(["docker", "rm", "-f", t.container], capture_output=True)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(*args: str, check: bool = True, input: str | None = None, quiet: bool = True) -> str:
    res = subprocess.run(list(args), input=input, text=True, capture_output=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


# --- Docker -----------------------------------------------------------------

def ensure_docker() -> None:
    """Start a Docker daemon if none answers (CI machines start without one)."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return
    log("starting dockerd")
    logf = open("/var/log/mcp-edge-dockerd.log", "a")
    subprocess.Popen(["dockerd"], stdout=logf, stderr=logf, start_new_session=True)
    for _ in range(120):
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("dockerd did not come up in 60 s; see /var/log/mcp-edge-dockerd.log")


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def base_image() -> str:
    """Debian base from debootstrap; rebuilt only when its recipe changes."""
    recipe = f"debootstrap --variant=minbase {SUITE} {DEBIAN_MIRROR} v1".encode()
    tag = f"local/mcp-edge-base:{SUITE}-{_digest(recipe)}"
    if image_exists(tag):
        return tag
    log(f"building {tag} with debootstrap (about 30 s)")
    with tempfile.TemporaryDirectory(prefix="mcp-edge-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run("debootstrap", "--variant=minbase", SUITE, str(rootfs), DEBIAN_MIRROR)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return tag


def built_image(name: str) -> str:
    """Build images/<name> FROM the base; the tag is a hash of the recipe files.

    The machine's own extra CA certificates (/usr/local/share/ca-certificates)
    go into the build context as extra-ca/: targets reach the package
    registries through the same network as this machine.
    """
    base = base_image()
    with tempfile.TemporaryDirectory(prefix=f"mcp-edge-{name}-") as tmp:
        ctx = Path(tmp) / "ctx"
        shutil.copytree(IMAGES / name, ctx)
        (ctx / "extra-ca").mkdir(exist_ok=True)
        for crt in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
            shutil.copy(crt, ctx / "extra-ca" / crt.name)
        parts = [base.encode()] + [
            p.relative_to(ctx).as_posix().encode() + b"\0" + p.read_bytes()
            for p in sorted(ctx.rglob("*")) if p.is_file()
        ]
        tag = f"local/mcp-edge-{name}:{_digest(*parts)}"
        if not image_exists(tag):
            log(f"building {tag}")
            run("docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", tag, str(ctx))
    return tag


def container_image(container: str) -> str | None:
    """The image of a running container, or None."""
    out = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}} {{.State.Running}}", container],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    image, running = out.stdout.split()
    return image if running == "true" else None


def bench_id() -> str:
    """Identifies this checkout's bench state (its keys and CA): a container
    started for another checkout is replaced, not reused."""
    parts = [str(STATE).encode()]
    for name in ("ca/ca.pem", "ssh/id_ed25519.pub"):
        path = STATE / name
        parts.append(path.read_bytes() if path.exists() else b"")
    return _digest(*parts)


def container_current(container: str, image: str) -> bool:
    if container_image(container) != image:
        return False
    label = run("docker", "inspect", "-f", '{{index .Config.Labels "mcp-edge.bench-id"}}', container, check=False)
    return label.strip() == bench_id()


def container_ip(container: str) -> str:
    fmt = "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % NETWORK
    return run("docker", "inspect", "-f", fmt, container).strip()


def ensure_network() -> None:
    if subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True).returncode != 0:
        run("docker", "network", "create", NETWORK)


# --- Local state: keys, CA, passwords ----------------------------------------

def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def ensure_state() -> None:
    STATE.mkdir(mode=0o700, exist_ok=True)
    key = STATE / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(mode=0o700, exist_ok=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mcp-edge-bench", "-f", str(key))
    pw = STATE / "sudo-password"
    if not pw.exists():
        _write(pw, secrets.token_urlsafe(18) + "\n", 0o600)
    ca = STATE / "ca"
    if not (ca / "ca.pem").exists():
        ca.mkdir(mode=0o700, exist_ok=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "3650", "-subj", "/CN=mcp-edge bench CA", "-keyout", str(ca / "ca.key"),
            "-out", str(ca / "ca.pem"))
    leaf = ca / "acme.pem"
    if not leaf.exists():
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={ACME_ALIAS}", "-keyout", str(ca / "acme.key"), "-out", str(ca / "acme.csr"))
        ext = ca / "acme.ext"
        _write(ext, f"subjectAltName=DNS:{ACME_ALIAS},DNS:{ACME_CONTAINER},DNS:localhost,IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", str(ca / "acme.csr"), "-CA", str(ca / "ca.pem"),
            "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
            "-out", str(leaf))
        (ca / "acme.key").chmod(0o644)  # read by pebble inside its container
    _write(STATE / "pebble.json", json.dumps({"pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/tls/acme.pem",
        "privateKey": "/etc/pebble/tls/acme.key",
        "httpPort": 80,
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}, indent=2) + "\n")


def sudo_password() -> str:
    return (STATE / "sudo-password").read_text().strip()


# --- Containers ----------------------------------------------------------------

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


def network_gateway() -> str:
    """The bench network's gateway: where the DSM simulator reaches ports that
    its sibling containers publish (they run on the bench's Docker daemon)."""
    return run("docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", NETWORK).strip()


def prepare_volume() -> None:
    """The NAS's /volume1 data and the stand-in apps' sources (the operator's code)."""
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


def settings_dict() -> dict:
    t, nas = TARGETS["ubuntu"], TARGETS["synology"]
    gateway = network_gateway()

    def container(name, mounts):
        return {"name": f"{name}{_SUFFIX}", "build_context": f"{VOLUME}/docker/{name}",
                "base_image": built_image("pyapp"), "volumes": [m.replace("/volume1", VOLUME, 1) for m in mounts]}

    return {
        "ssh": {
            "user": "deploy",
            "key_file": "ssh/id_ed25519",
            "known_hosts_file": "known_hosts",
            "strict_host_key_checking": "yes",
            "file_transfer": "sftp",
            "sudo_password_file": "sudo-password",
        },
        "hosts": [
            {"name": t.name, "group": "ubuntu", "address": "127.0.0.1", "port": t.ssh_port, "domain": t.domain},
            # The DSM simulator: SFTP is off (scp), the admin user's sudo needs a password.
            {"name": nas.name, "group": "synology", "address": "127.0.0.1", "port": nas.ssh_port,
             "domain": nas.domain, "user": nas.user, "file_transfer": "scp"},
            *({"name": x.name, "group": "ubuntu", "address": "127.0.0.1", "port": x.ssh_port, "domain": x.domain}
              for key, x in TARGETS.items() if key.startswith("ubuntu-")),
        ],
        "ubuntu": {
            # The operator's stdio server, baked into the bench image; one process per session.
            "gateway": {"command": ["node", "/opt/mcp-demo/server.js"]},
            # This machine caps open files at 20000 per process (hard); above
            # it nginx's setrlimit fails and workers keep 1024. A real host's
            # systemd allows the default 65535. Connections stay below half the
            # limit (a proxied stream holds two; gixy checks it), so the bench's
            # 10,000 streams are spread over four workers.
            "nginx": {"worker_rlimit_nofile": 20000, "worker_connections": 8192, "worker_processes": 4},
            "acme": {"email": f"ops@{_DOMAIN_SUFFIX}", "server": ACME_DIRECTORY, "ca_bundle_file": "ca/ca.pem"},
            # Pebble's root (fetched by up()) signs the targets' certificates.
            "verify": {"ca_file": "pebble-root.pem"},
        },
        "synology": {
            "bundle_dir": f"{VOLUME}/mcp-edge",
            # Sibling containers publish on the bench network's gateway (see network_gateway).
            "publish_address": gateway,
            "upstream_host": gateway,
            "patch_entries": [LEGACY_DOMAIN],
            "guard_interval": "1m",
            "verify": {"ca_file": "ca/ca.pem"},  # DSM serves its own certificate (bench CA)
            "loop_api": container("loop-api", ["/volume1/LOOP_CORE/vault/LOOP:/vault:rw",
                                               "/volume1/LOOP_CLevel/vault/loop_exec:/vault/exec:ro"]),
            "loop_mcp": container("loop-mcp", ["/volume1/LOOP_CORE/vault/LOOP:/vault:ro"]),
        },
    }


# Merged into settings_dict() by write_settings() (the bench's own runs set it).
SETTINGS_OVERRIDES: dict = {}


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merged(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def write_settings(data: dict | None = None, name: str = "settings.yaml") -> Path:
    import yaml

    path = STATE / name
    header = "# Generated by the mcp-edge test bench (python -m tests.bench up).\n"
    _write(path, header + yaml.safe_dump(data or _merged(settings_dict(), SETTINGS_OVERRIDES), sort_keys=False),
           0o600)
    return path


def write_endpoints() -> dict:
    data = {}
    for group, t in TARGETS.items():
        if group.startswith("ubuntu-"):
            continue  # extra targets are bench/-only
        data[group] = {
            "url": t.url,
            # Ubuntu: Pebble issued the certificate; the NAS serves DSM's own (bench CA).
            "ca_file": str(STATE / ("pebble-root.pem" if group == "ubuntu" else "ca/ca.pem")),
            "ssh_port": t.ssh_port,
            "ssh_user": t.user,
            "container": t.container,
            "host": t.name,
            "domain": t.domain,
            "address": t.public_ip,
        }
    _write(STATE / "endpoints.json", json.dumps(data, indent=2) + "\n")
    return data


def up(fresh: bool = False) -> dict:
    """Bring the bench up (idempotent). ``fresh`` recreates the targets bare."""
    ensure_docker()
    ensure_state()
    ensure_network()
    start_acme()
    built_image("pyapp")
    for t in TARGETS.values():
        start_target(t, fresh=fresh)
        register_dns(t.domain, container_ip(t.container))
    pebble_roots()
    write_known_hosts()
    write_etc_hosts()
    write_settings()
    return write_endpoints()


def down() -> None:
    siblings = [f"{n}{_SUFFIX}{p}" for n in ("loop-api", "loop-mcp") for p in ("", ".mcp-edge-previous")]
    extra = [_extra_target(n).container for n in range(2, MAX_EXTRA_TARGETS + 2)]
    for name in [t.container for t in TARGETS.values()] + extra + [ACME_CONTAINER] + siblings:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    hosts = Path("/etc/hosts")
    hosts.write_text(without_hosts_block(hosts.read_text()))
    if STATE.exists():
        shutil.rmtree(STATE)


def pyinfra(*args: str, settings: Path | None = None, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the pyinfra CLI of the venv against the sandbox inventory."""
    e = dict(os.environ)
    if settings is not None:
        e["MCP_EDGE_SANDBOX_SETTINGS"] = str(settings)
    e.update(env or {})
    exe = ROOT / ".venv" / "bin" / "pyinfra"
    res = subprocess.run([str(exe), "inventories/sandbox.py", *args], cwd=ROOT, env=e,
                         capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"pyinfra {' '.join(args)} failed ({res.returncode}):\n"
                           f"{res.stdout[-6000:]}\n{res.stderr[-6000:]}")
    return res


def target_exec(t: Target, *cmd: str, check: bool = True, input: str | None = None) -> str:
    """Run a command inside a target container (as root, outside the deploy's path)."""
    opts = ["-i"] if input is not None else []
    return run("docker", "exec", *opts, t.container, *cmd, check=check, input=input)


def sandbox() -> int:
    """`make sandbox`: bench up, apply deploy.py, verify, print the URLs."""
    from mcpedge.verify import VerifyError, verify

    endpoints = up()
    log("applying deploy.py to the sandbox (pyinfra -y inventories/sandbox.py deploy.py)")
    res = pyinfra("-y", "deploy.py", check=False)
    if res.returncode != 0:
        print(res.stdout[-6000:], res.stderr[-6000:], sep="\n", file=sys.stderr)
        return 1
    for group, ep in endpoints.items():
        try:
            for line in verify(ep["url"], ep["ca_file"]):
                log(f"{group}: ok {line}")
        except VerifyError as exc:
            log(f"{group}: verification FAILED: {exc}")
            return 1
    print("\nThe sandbox is up:")
    for group, ep in endpoints.items():
        print(f"  {group:9} {ep['url']}/mcp (Streamable HTTP)   {ep['url']}/sse (SSE)   "
              f"ssh -p {ep['ssh_port']} {ep['ssh_user']}@127.0.0.1 ({ep['container']})")
        print(f"  {'':9} trust: {ep['ca_file']}   e.g. curl --cacert {ep['ca_file']} {ep['url']}/health")
    print(f"  endpoints: {STATE / 'endpoints.json'}")
    return 0


def apply(settings: Path | None = None, check: bool = True, limit: str | None = None) -> dict:
    """Apply deploy.py (-y --json); returns the parsed JSON plus `changed` (op names
    that changed something), `rc` and the captured stderr log."""
    args = ["-y", "--json", "deploy.py"]
    if limit:
        args = ["--limit", limit, *args]
    res = pyinfra(*args, settings=settings, check=check)
    try:
        data = json.loads(res.stdout) if res.stdout.strip() else {}
    except ValueError:
        data = {}
    ops = (data.get("results") or {}).get("operations") or []
    data["changed"] = [op["name"] for op in ops if op["success"]]
    data["errors"] = [op["name"] for op in ops if op["error"]]
    data["rc"] = res.returncode
    data["log"] = res.stderr
    return data
