"""The dry run, seen from the inside, and the apply of a repair.

The dry run runs in a child process (pyinfra keeps global state): ``python -m
mcpedge.drift --collect OUT INVENTORY``. There pyinfra's CLI runs as usual with
``--dry``, a :class:`DriftCollector` observing it (``mcpedge.pyinfra_compat``):
at the end of deploy.py for each host, still connected, every operation that
would change something is described from its commands and the facts it
compares; the endpoint's verification, which runs in the drift check's dry run
too, is recorded. The collector's result is written to OUT when the CLI exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mcpedge import pyinfra_compat

from .describe import describe
from .report import BUNDLE_ROOT, known_secrets, scrub, settings_digest


class DriftError(RuntimeError):
    pass


class DriftCollector:
    """The observer of one dry run (role ``"drift"``)."""

    def __init__(self):
        self.state = None
        self.hosts: dict[str, dict] = {}
        self.verify: dict[str, dict] = {}

    def attach(self, state) -> None:
        self.state = state

    def record_verify(self, host_name: str, result: dict) -> None:
        """Called by the verify_endpoint operation in the dry run: the outcome is reported, not a change."""
        self.verify[host_name] = result

    def host_prepared(self, state, host) -> None:
        from pyinfra.context import ctx_host

        drift = []
        try:
            for op_hash in state.get_op_order():
                op_data = state.ops.get(host, {}).get(op_hash)
                if not op_data or op_data.global_arguments.get("_if"):
                    continue  # not this host's, or a handler: runs only after another change, not drift by itself
                with ctx_host.use(host):
                    if op_data.operation_meta.will_change:
                        drift.extend(describe(state, host, op_hash, op_data))
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            self.hosts[host.name] = {"error": f"drift collector: {type(exc).__name__}: {exc}"}
            return
        self.hosts[host.name] = {"drift": drift}

    def result(self) -> dict:
        """Per host: its drift and verification, or why it could not be checked; secrets scrubbed."""
        from mcpedge.settings import current

        result = {"hosts": {}, "errors": [], "control": None}
        secrets: set = set()
        try:
            settings = current()
            result["settings_file"] = str(Path(settings.path).resolve())
            result["settings_digest"] = settings_digest(settings)
            result["control"] = settings.section("control") if "control" in settings.sections else None
            secrets = known_secrets(settings)
            state = self.state
            failed = {h.name for h in state.failed_hosts} if state is not None else set()
            for host in state.inventory if state is not None else []:
                if host.name in failed and "drift" not in self.hosts.get(host.name, {}):
                    result["hosts"][host.name] = {"error": "the host failed during the dry run (see the log)"}
                elif host.name in self.hosts:
                    result["hosts"][host.name] = {**self.hosts[host.name], "verify": self.verify.get(host.name)}
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            result["errors"].append(f"drift collector: {type(exc).__name__}: {exc}")
        return json.loads(scrub(json.dumps(result, default=str), secrets))


def collect_in_this_process(out_path: str, inventory: str, limits: list[str]):
    """The child's side: pyinfra's CLI, ``--dry``, with the collector observing."""
    import pyinfra
    from pyinfra_cli.main import main

    collector = DriftCollector()
    pyinfra_compat.observe("drift", collector)
    sys.argv = ["pyinfra", inventory, "deploy.py", "--dry"] + [a for x in limits for a in ("--limit", x)]
    pyinfra.is_cli = True
    code = 1
    try:
        main()
    except SystemExit as exc:  # the CLI always exits: its status is what the parent reads
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        Path(out_path).write_text(json.dumps(collector.result()))
    raise SystemExit(code)


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_check(inventory: str, limits: list[str]) -> dict:
    """One dry run in a child process; returns the collector's result (and ``rc``)."""
    with tempfile.TemporaryDirectory(prefix="mcp-edge-drift-") as tmp:
        out = Path(tmp) / "result.json"
        res = subprocess.run([sys.executable, "-m", "mcpedge.drift", "--collect", str(out), inventory,
                              *[a for x in limits for a in ("--limit", x)]],
                             cwd=BUNDLE_ROOT, capture_output=True, text=True)
        if not out.exists():
            raise DriftError(f"the dry run failed (exit {res.returncode}):\n{_tail(res.stderr or res.stdout)}")
        result = json.loads(out.read_text())
    result["rc"] = res.returncode
    if res.returncode != 0 and not result["errors"]:
        result["errors"].append(f"the dry run failed (exit {res.returncode}):\n{_tail(res.stderr)}")
    return result


def run_apply(inventory: str, hosts: list[str]) -> dict:
    """Apply deploy.py to ``hosts``; returns rc and the operations that changed (or failed) per host."""
    exe = Path(sys.executable).parent / "pyinfra"
    cmd = [str(exe) if exe.exists() else "pyinfra", "-y", "--json", inventory, "deploy.py"]
    for h in hosts:
        cmd += ["--limit", h]
    res = subprocess.run(cmd, cwd=BUNDLE_ROOT, capture_output=True, text=True)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        data = {}
    changed: dict[str, list[str]] = {h: [] for h in hosts}
    failed: dict[str, list[str]] = {}
    for op in ((data.get("results") or {}).get("operations") or []):
        for h in op.get("success") or []:
            changed.setdefault(h, []).append(op["name"])
        for h in op.get("error") or []:
            failed.setdefault(h, []).append(op["name"])
    return {"rc": res.returncode, "changed": changed, "failed": failed,
            "log": "" if res.returncode == 0 else _tail(res.stderr, 40)}
