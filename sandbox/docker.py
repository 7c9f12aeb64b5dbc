"""Docker without registries: the daemon, images built from Debian packages, containers."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .layout import DEBIAN_MIRROR, IMAGES, NETWORK, STATE, SUITE, log, run


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
        shutil.copytree(IMAGES / name, ctx, ignore=shutil.ignore_patterns("node_modules"))
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


def network_gateway() -> str:
    """The bench network's gateway: where the DSM simulator reaches ports that
    its sibling containers publish (they run on the bench's Docker daemon)."""
    return run("docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", NETWORK).strip()
