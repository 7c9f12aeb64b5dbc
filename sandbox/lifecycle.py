"""Bring the bench up and down, run pyinfra against it, the sandbox command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .docker import built_image, container_ip, ensure_docker, ensure_network
from .layout import (
    _SUFFIX,
    ACME_CONTAINER,
    MAX_EXTRA_TARGETS,
    NETWORK,
    ROOT,
    STATE,
    TARGETS,
    _extra_target,
    log,
)
from .settings import write_endpoints, write_settings
from .state import ensure_state
from .targets import (
    pebble_roots,
    register_dns,
    start_acme,
    start_target,
    without_hosts_block,
    write_etc_hosts,
    write_known_hosts,
)


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
