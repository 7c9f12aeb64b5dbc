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

    @property
    def url(self) -> str:
        return f"https://{self.domain}"


TARGETS = {
    "ubuntu": Target("ubuntu", "gw1", f"mcp-edge-gw1{_SUFFIX}", 2222 + 10 * SLOT, f"127.0.{SLOT}.2",
                     f"mcp.{_DOMAIN_SUFFIX}", "target"),
}


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
    log(f"starting {t.container} (bare {SUITE}, systemd)")
    run("docker", "run", "-d", "--name", t.container, "--hostname", t.name, "--network", NETWORK,
        "--label", "mcp-edge.bench=target", "--label", f"mcp-edge.bench-id={bench_id()}", *SYSTEMD_RUN,
        "-p", f"127.0.0.1:{t.ssh_port}:22", "-p", f"{t.public_ip}:80:80", "-p", f"{t.public_ip}:443:443",
        image)
    _wait(f"systemd in {t.container}", lambda: subprocess.run(
        ["docker", "exec", t.container, "systemctl", "is-system-running", "--wait"],
        capture_output=True, text=True).stdout.strip() in ("running", "degraded"), timeout=90)
    # Password and key go through stdin: never on a command line.
    run("docker", "exec", "-i", t.container, "chpasswd", input=f"deploy:{sudo_password()}\n")
    pub = (STATE / "ssh" / "id_ed25519.pub").read_text()
    run("docker", "exec", "-i", t.container, "sh", "-c",
        "cat > /home/deploy/.ssh/authorized_keys && chown deploy:deploy /home/deploy/.ssh/authorized_keys"
        " && chmod 600 /home/deploy/.ssh/authorized_keys", input=pub)
    _wait(f"sshd on 127.0.0.1:{t.ssh_port}", lambda: _ssh_banner(t.ssh_port))


def write_known_hosts() -> None:
    lines = []
    for t in TARGETS.values():
        if container_image(t.container):
            key = run("docker", "exec", t.container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
            lines.append(f"[127.0.0.1]:{t.ssh_port} {key[0]} {key[1]}")
    _write(STATE / "known_hosts", "\n".join(lines) + "\n", 0o600)


def write_etc_hosts() -> None:
    """Resolve the bench domains to their loopback addresses (managed block)."""
    path = Path("/etc/hosts")
    text = path.read_text()
    if HOSTS_BEGIN in text:
        head, _, rest = text.partition(HOSTS_BEGIN)
        _, _, tail = rest.partition(HOSTS_END)
        text = head.rstrip("\n") + "\n" + tail.lstrip("\n")
    block = "\n".join([HOSTS_BEGIN] + [f"{t.public_ip} {t.domain}" for t in TARGETS.values()] + [HOSTS_END])
    new = text.rstrip("\n") + "\n" + block + "\n"
    if new != path.read_text():
        path.write_text(new)


def settings_dict() -> dict:
    t = TARGETS["ubuntu"]
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
        ],
        "ubuntu": {
            "supergateway": {"stdio_command": "node /opt/mcp-demo/server.js"},
            "acme": {"email": f"ops@{_DOMAIN_SUFFIX}", "server": ACME_DIRECTORY, "ca_bundle_file": "ca/ca.pem"},
        },
    }


def write_settings(data: dict | None = None, name: str = "settings.yaml") -> Path:
    import yaml

    path = STATE / name
    header = "# Generated by the mcp-edge test bench (python -m tests.bench up).\n"
    _write(path, header + yaml.safe_dump(data or settings_dict(), sort_keys=False), 0o600)
    return path


def write_endpoints() -> dict:
    data = {}
    for group, t in TARGETS.items():
        data[group] = {
            "url": t.url,
            "ca_file": str(STATE / "pebble-root.pem"),
            "ssh_port": t.ssh_port,
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
    for t in TARGETS.values():
        start_target(t, fresh=fresh)
        register_dns(t.domain, container_ip(t.container))
    pebble_roots()
    write_known_hosts()
    write_etc_hosts()
    write_settings()
    return write_endpoints()


def down() -> None:
    for name in [t.container for t in TARGETS.values()] + [ACME_CONTAINER]:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
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
              f"ssh -p {ep['ssh_port']} deploy@127.0.0.1 ({ep['container']})")
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
