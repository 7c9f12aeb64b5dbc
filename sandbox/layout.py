"""Who is where on the bench: names, slots, ports, loopback addresses, paths; running commands."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
# host's (sandbox/control.py: +2, 127.0.SLOT.4), HTTPS on 127.0.SLOT.5..11.
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


def target_exec(t: Target, *cmd: str, check: bool = True, input: str | None = None) -> str:
    """Run a command inside a target container (as root, outside the deploy's path)."""
    opts = ["-i"] if input is not None else []
    return run("docker", "exec", *opts, t.container, *cmd, check=check, input=input)
