"""What a drift run reports: digests, secrets scrubbed, corrective or intentional, the JSON report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

BUNDLE_ROOT = Path(__file__).resolve().parents[2]
FORMAT = "mcp-edge-drift/1"
EXIT_OK, EXIT_ERROR, EXIT_DRIFT, EXIT_LOCKED = 0, 1, 2, 75
# What a bundle revision covers: everything that decides what a deploy does.
BUNDLE_PATHS = ("deploy.py", "inventory.py", "inventories", "group_data", "tasks", "templates", "files", "mcpedge",
                "requirements.txt")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bundle_revision(root: Path = BUNDLE_ROOT) -> str:
    """A digest of the bundle's files (no git needed on the control host)."""
    h = hashlib.sha256()
    for top in BUNDLE_PATHS:
        base = root / top
        if not base.exists():
            continue
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for p in paths:
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def settings_digest(settings) -> str:
    """A digest of the settings: a secret counts by its digest (a rotated secret is a
    settings change), never by its value."""
    from mcpedge.settings import Secret

    def encode(value):
        return value.digest() if isinstance(value, Secret) else str(value)

    return sha256(json.dumps(
        {"sections": settings.sections, "hosts": [[h.name, h.group, h.address, h.domain] for h in settings.hosts]},
        sort_keys=True, default=encode))


def _secrets_in(value, out: set) -> set:
    from mcpedge.settings import Secret

    if isinstance(value, Secret):
        out.add(value.reveal())
    elif isinstance(value, dict):
        for v in value.values():
            _secrets_in(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _secrets_in(v, out)
    return out


def known_secrets(settings=None) -> set[str]:
    """Every secret value the (current) settings hold (env: values, sudo passwords)."""
    from mcpedge.settings import current

    s = settings or current()
    found = _secrets_in(s.sections, set())
    for h in s.hosts:
        if h.sudo_password:
            found.add(h.sudo_password.reveal())
    return {v for v in found if v}


def inventory_secrets(inventory: str) -> set[str]:
    """The secret values of the settings the inventory loads (no host is contacted)."""
    import runpy

    cwd = os.getcwd()
    try:
        os.chdir(BUNDLE_ROOT)
        runpy.run_path(inventory)
        return known_secrets()
    except (Exception, SystemExit):  # noqa: BLE001 - bad settings: the dry run reports them
        return set()
    finally:
        os.chdir(cwd)


def scrub(text: str, secrets: set[str]) -> str:
    """``text`` with every secret value (also as escaped in JSON or a systemd
    environment file) replaced by ``***``."""
    from mcpedge.escape import systemd_env_value

    variants = set()
    for value in secrets:
        variants |= {value, json.dumps(value)[1:-1], systemd_env_value(value)[1:-1]}
    for value in sorted(variants, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def classify(record: dict | None, digest: str, revision: str) -> tuple[str, str]:
    """(corrective | intentional, why) for a host found with drift."""
    if not record:
        return "intentional", "no converged run recorded yet"
    changed = [what for what, key, value in (("settings", "settings_digest", digest),
                                             ("bundle", "bundle_revision", revision)) if record.get(key) != value]
    if changed:
        return "intentional", f"{' and '.join(changed)} changed since the last converged run ({record.get('converged_at')})"
    return "corrective", f"settings and bundle unchanged since the last converged run ({record.get('converged_at')})"


def load_state(state_dir: Path | None) -> dict:
    if not state_dir:
        return {"hosts": {}}
    try:
        return json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {"hosts": {}}


def save_state(state_dir: Path | None, state: dict) -> None:
    if state_dir:
        write_json(state_dir / "state.json", state)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def summary(report: dict) -> list[str]:
    """The lines printed for a run: one per host, one per drifted resource, the result."""
    lines = [f"mcp-edge drift {report['mode']}: {report['inventory']} "
             f"(bundle {report['bundle_revision']}, settings {str(report.get('settings_digest'))[7:19]})"]
    for h in report["hosts"]:
        head = f"{h['host']}: {h['status']}"
        if h.get("change"):
            head += f" ({h['change']}: {h['reason']})"
        if h.get("error"):
            head += f": {h['error']}"
        lines.append(head)
        if h.get("verify"):
            v = h["verify"]
            lines.append(f"  {'endpoint':<12} {v['url']}: " + ("verified" if v["ok"] else "FAILED (see the error)"))
        for d in (x for x in report["drift"] if x["host"] == h["host"]):
            extra = f" {d['before']} -> {d['after']}" if d["kind"] in ("mode", "owner") else ""
            lines.append(f"  {d['kind']:<12} {d['resource']}{extra}   [{d['operation']}]")
        if h.get("restored"):
            lines.append(f"  restored by {len(h['restored'])} operation(s); re-check: no drift")
    lines.append(f"result: {report['status']} (exit {report['exit_code']})")
    return lines


def notify(command: str | None, event: str, report_path: Path) -> None:
    """Run ``control.notify_command`` (through /bin/sh) with the event and the report's path."""
    if not command:
        return
    env = dict(os.environ, MCP_EDGE_DRIFT_EVENT=event, MCP_EDGE_DRIFT_REPORT=str(report_path))
    res = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        print(f"notify command failed (exit {res.returncode})", file=sys.stderr)
