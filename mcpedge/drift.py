"""Drift check (and scheduled repair) of every host in an inventory.

    python -m mcpedge.drift [INVENTORY] [--report FILE] [--state-dir DIR]
    python -m mcpedge.drift [INVENTORY] --repair --state-dir DIR [--lock FILE]

The deploy runs in dry mode (``pyinfra INVENTORY deploy.py --dry``); every
operation that would change something is drift, except handlers (operations
with ``_if``: they only run after another operation changed). Exit codes, as
``terraform plan -detailed-exitcode``:

    0  no drift
    2  drift (with --repair: drift found, applied, and a re-check found none)
    1  error (a host unreachable, a failed operation, bad settings ...)
    75 --lock is held by another run: nothing was done

A short summary per host and resource goes to stdout; the JSON report
(``--report``, default ``drift-report.json``) lists, per drifted resource:
host, resource, kind (content, missing, mode, owner, link, directory,
package, service, certificate, ...), before/after sha256 and a unified diff.
Each host's public endpoint is verified as after an apply (``mcpedge.verify``;
setting ``<group>.verify``): a failing endpoint on a host without drift is an
error, beside drift it is reported and the repair's apply verifies again.
Secret values never appear: files written by ``secret_template`` are diffed
masked, and every known secret value left in the report is replaced by ``***``.

With ``--state-dir`` each host's settings digest and bundle revision are
recorded whenever it is found converged; a later change is *corrective* when
both are unchanged since (a hand edit was undone) and *intentional* when the
settings or the bundle changed (Puppet's distinction). ``--repair`` also keeps
a copy of every report with drift or an error under ``<state-dir>/reports/``
and runs the ``control.notify_command`` of the settings on a corrective
change or a failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mcpedge import pyinfra_compat

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
FORMAT = "mcp-edge-drift/1"
EXIT_OK, EXIT_ERROR, EXIT_DRIFT, EXIT_LOCKED = 0, 1, 2, 75
# What a bundle revision covers: everything that decides what a deploy does.
BUNDLE_PATHS = ("deploy.py", "inventory.py", "inventories", "group_data", "tasks", "templates", "mcpedge",
                "requirements.txt")
MAX_DIFF_LINES = 400


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bundle_revision(root: Path = BUNDLE_ROOT) -> str:
    """A digest of the bundle's files (no git needed on the control host)."""
    h = hashlib.sha256()
    for top in BUNDLE_PATHS:
        base = root / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for p in paths:
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


# --- The collector: one dry run, inside the pyinfra CLI -------------------------------------
#
# Runs in its own process (pyinfra keeps global state): `python -m mcpedge.drift
# --collect OUT INVENTORY`. pyinfra's CLI is run as usual with --dry; at the end of
# deploy.py for each host (still connected), every operation that would change
# something is described by regenerating its commands and reading the facts it compares.

_FACT_ARGS = ("_sudo", "_sudo_user", "_sudo_password", "_use_sudo_login", "_preserve_sudo_env", "_su_user",
              "_use_su_login", "_preserve_su_env", "_su_shell", "_su_password", "_doas", "_doas_user",
              "_dzdo", "_dzdo_user", "_env", "_shell_executable")

_KINDS = {
    "files.link": "link", "files.directory": "directory", "files.file": "file", "files.line": "content",
    "files.block": "content", "systemd.service": "service", "systemd.daemon_reload": "service",
    "apt.packages": "package", "apt.update": "package", "apt.repo": "package",
    "server.user": "account", "server.group": "account", "certificate": "certificate",
}


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


def _digest_secrets(value):
    """json.dumps default for the settings digest: a secret counts by its digest
    (a rotated secret is a settings change), never by its value."""
    from mcpedge.settings import Secret

    return value.digest() if isinstance(value, Secret) else str(value)


def known_secrets() -> set[str]:
    """Every secret value the current settings hold (env: values, sudo passwords)."""
    from mcpedge.settings import current

    s = current()
    found = _secrets_in(s.sections, set())
    for h in s.hosts:
        if h.sudo_password:
            found.add(h.sudo_password.reveal())
    return {v for v in found if v}


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


def _read_src(src) -> str | None:
    try:
        if hasattr(src, "getvalue"):
            value = src.getvalue()
        else:
            with open(src, "rb") as f:
                value = f.read()
        return value.decode() if isinstance(value, bytes) else value
    except (OSError, UnicodeDecodeError):
        return None


def _describe(state, host, op_hash, op_data) -> list[dict]:
    """What one drifted operation would do on one host, as report items."""
    from pyinfra.api.command import FileUploadCommand, StringCommand
    from pyinfra.facts.files import File, FileContents, Sha256File

    from mcpedge.facts import MaskedEnvFile
    from mcpedge.operations import SecretContent, masked_diff

    name = sorted(state.op_meta[op_hash].names)[0]
    func, kwargs = pyinfra_compat.operation_call(op_data)
    func_name = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}" if func else "unknown"
    kind = _KINDS.get(func_name) or _KINDS.get(func_name.split(".")[-1]) or func_name
    resource = next((str(kwargs[k]) for k in ("dest", "path", "service", "package", "cert_name", "user", "group")
                     if kwargs.get(k)), None)
    if resource is None and kwargs.get("packages"):
        resource = " ".join(kwargs["packages"])
    base = {"host": host.name, "operation": name, "resource": resource or name, "kind": kind,
            "before": None, "after": None, "diff": None, "actions": []}

    def fact(cls, **kw):
        previous = host.current_op_global_arguments
        host.current_op_global_arguments = op_data.global_arguments
        try:
            return host.get_fact(cls, **kw)
        finally:
            host.current_op_global_arguments = previous

    try:
        commands = list(op_data.command_generator())
    except Exception as exc:  # noqa: BLE001 - describe what we can
        base["actions"] = [f"(could not list the commands: {type(exc).__name__})"]
        return [base]

    items, meta_cmds = [], []
    for cmd in commands:
        if isinstance(cmd, FileUploadCommand):
            remote = fact(File, path=cmd.dest)
            item = dict(base, resource=cmd.dest, kind="content" if remote else "missing")
            if isinstance(cmd.src, SecretContent) and cmd.src.masked is None:
                after_text, after_raw, before_text = None, cmd.src.getvalue(), None  # secret_file: no diff at all
            elif isinstance(cmd.src, SecretContent):
                after_text, after_raw = cmd.src.masked, cmd.src.getvalue()
                before_text = fact(MaskedEnvFile, path=cmd.dest, names=cmd.src.secret_names) if remote else None
            else:
                after_text = after_raw = _read_src(cmd.src)
                lines = fact(FileContents, path=cmd.dest) if remote else None
                before_text = "".join(line + "\n" for line in lines) if lines is not None else None
            item["before"] = (f"sha256:{fact(Sha256File, path=cmd.dest)}" if remote else None)
            item["after"] = _sha256(after_raw) if after_raw is not None else None
            if after_text is not None:
                diff = masked_diff(before_text, after_text, cmd.dest)
                if len(diff) > MAX_DIFF_LINES:
                    diff = diff[:MAX_DIFF_LINES] + [f"... ({len(diff) - MAX_DIFF_LINES} more lines)\n"]
                item["diff"] = "".join(diff)
            item["actions"] = [f"upload {cmd.dest}" + (" (content not shown: it holds secrets)"
                                                        if after_text is None and after_raw is not None else "")]
            items.append(item)
        elif isinstance(cmd, StringCommand):
            meta_cmds.append(cmd.get_masked_value())
        else:
            meta_cmds.append(type(cmd).__name__)

    if items:
        return items
    base["actions"] = meta_cmds[:10]
    if func_name == "operations.certificate":
        from mcpedge.facts import CertbotCertificate

        current = fact(CertbotCertificate, cert_name=kwargs["cert_name"])
        before = "absent" if not current else ("files missing" if not current["files_ok"] else "other server/domains")
        return [dict(base, before=before, after="issued")]
    # Only metadata of a file changes: say which, with before and after.
    words = [c.split() for c in meta_cmds]
    if func_name in ("files.put", "files.template", "operations.nginx_template", "operations.secret_template") \
            or kind in ("file", "directory", "nginx_template", "secret_template"):
        remote = fact(File, path=resource) if resource and resource.startswith("/") else None
        for w in words:
            if len(w) >= 3 and w[0] == "chmod":
                return [dict(base, kind="mode", before=str(remote["mode"]) if remote else None, after=w[-2])]
            if len(w) >= 3 and w[0] == "chown":
                before = f"{remote['user']}:{remote['group']}" if remote else None
                return [dict(base, kind="owner", before=before, after=w[-2])]
        if func_name == "files.file" and kwargs.get("present") is False:
            return [dict(base, kind="unmanaged", before="present", after="absent")]
    return [base]


class DriftCollector:
    """Sees a dry run from the inside (``mcpedge.pyinfra_compat.observe``): at the
    end of deploy.py for each host, while it is connected, every operation that
    would change something is described from its commands and the facts it
    compares; the verification of the endpoint, run in the dry run too, is recorded."""

    def __init__(self):
        self.state = None
        self.hosts: dict[str, dict] = {}
        self.verify: dict[str, dict] = {}

    def attach(self, state) -> None:
        self.state = state

    def record_verify(self, host_name: str, result: dict) -> None:
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
                        drift.extend(_describe(state, host, op_hash, op_data))
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            self.hosts[host.name] = {"error": f"drift collector: {type(exc).__name__}: {exc}"}
            return
        self.hosts[host.name] = {"drift": drift}

    def result(self) -> dict:
        from mcpedge.settings import current

        result = {"hosts": {}, "errors": [], "control": None}
        secrets: set = set()
        try:
            settings = current()
            result["settings_file"] = os.path.abspath(settings.path)
            result["settings_digest"] = _sha256(json.dumps(
                {"sections": settings.sections, "hosts": [[h.name, h.group, h.address, h.domain] for h in settings.hosts]},
                sort_keys=True, default=_digest_secrets))
            result["control"] = settings.section("control") if "control" in settings.sections else None
            secrets = known_secrets()
            state = self.state
            failed = {h.name for h in state.failed_hosts} if state is not None else set()
            for host in (state.inventory if state is not None else []):
                if host.name in failed and "drift" not in self.hosts.get(host.name, {}):
                    result["hosts"][host.name] = {"error": "the host failed during the dry run (see the log)"}
                elif host.name in self.hosts:
                    result["hosts"][host.name] = {**self.hosts[host.name], "verify": self.verify.get(host.name)}
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            result["errors"].append(f"drift collector: {type(exc).__name__}: {exc}")
        return json.loads(scrub(json.dumps(result, default=str), secrets))


def _collect(out_path: str, inventory: str, limits: list[str]) -> None:
    """The dry run, in this (child) process: pyinfra's CLI with the collector observing."""
    import pyinfra
    from pyinfra_cli.main import main

    collector = DriftCollector()
    pyinfra_compat.observe("drift", collector)
    sys.argv = ["pyinfra", inventory, "deploy.py", "--dry"] + [a for x in limits for a in ("--limit", x)]
    pyinfra.is_cli = True
    try:
        main()
    except SystemExit:  # the CLI always exits
        pass
    finally:
        Path(out_path).write_text(json.dumps(collector.result()))


# --- The driver ------------------------------------------------------------------------------


class DriftError(RuntimeError):
    pass


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_check(inventory: str, limits: list[str]) -> dict:
    """One dry run in a child process; returns the collector's result."""
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
    """Apply deploy.py to ``hosts``; returns rc and the operations that changed per host."""
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


def _load_state(state_dir: Path | None) -> dict:
    if not state_dir:
        return {"hosts": {}}
    try:
        return json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {"hosts": {}}


def _save_state(state_dir: Path | None, state: dict) -> None:
    if not state_dir:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / "state.json")


def classify(record: dict | None, settings_digest: str, revision: str) -> tuple[str, str]:
    """(corrective | intentional, why) for a host found with drift."""
    if not record:
        return "intentional", "no converged run recorded yet"
    changed = [what for what, key, now in (("settings", "settings_digest", settings_digest),
                                           ("bundle", "bundle_revision", revision)) if record.get(key) != now]
    if changed:
        return "intentional", f"{' and '.join(changed)} changed since the last converged run ({record.get('converged_at')})"
    return "corrective", f"settings and bundle unchanged since the last converged run ({record.get('converged_at')})"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _summary(report: dict) -> list[str]:
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


def _notify(command: str | None, event: str, report_path: Path) -> None:
    if not command:
        return
    env = dict(os.environ, MCP_EDGE_DRIFT_EVENT=event, MCP_EDGE_DRIFT_REPORT=str(report_path))
    res = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        print(f"notify command failed (exit {res.returncode})", file=sys.stderr)


def drift(inventory: str, limits: list[str], repair: bool, state_dir: Path | None, report_path: Path,
          notify_command: str | None = None) -> int:
    started = _now()
    revision = bundle_revision()
    report = {"format": FORMAT, "mode": "repair" if repair else "check", "started_at": started,
              "inventory": inventory, "settings_file": None, "settings_digest": None, "bundle_revision": revision,
              "hosts": [], "drift": [], "errors": []}
    try:
        check = run_check(inventory, limits)
    except DriftError as exc:
        check = None
        report["errors"].append(str(exc))
    if check is not None:
        report["settings_file"] = check.get("settings_file")
        report["settings_digest"] = check.get("settings_digest")
        report["errors"] += check["errors"]
        if notify_command is None and check.get("control"):
            notify_command = check["control"].get("notify_command")
    settings_digest = report["settings_digest"]
    state = _load_state(state_dir)
    records = state.setdefault("hosts", {})

    hosts = []
    for name, res in (check or {}).get("hosts", {}).items():
        entry = {"host": name, "status": "no drift", "change": None, "reason": None, "drift": res.get("drift") or [],
                 "restored": [], "error": res.get("error"), "verify": res.get("verify")}
        failed_verify = (entry["verify"] or {}).get("error")
        if entry["error"]:
            entry["status"] = "error"
        elif failed_verify and not entry["drift"]:
            # Configured as intended, yet the endpoint fails: nothing to repair, someone must look.
            entry["status"], entry["error"] = "error", failed_verify
        elif entry["drift"]:
            entry["status"] = "drift"
            if state_dir:
                entry["change"], entry["reason"] = classify(records.get(name), settings_digest, revision)
        hosts.append(entry)

    def converged(name: str) -> None:
        records[name] = {"settings_digest": settings_digest, "bundle_revision": revision, "converged_at": _now()}

    for h in hosts:
        if h["status"] == "no drift":
            converged(h["host"])

    drifted = [h for h in hosts if h["status"] == "drift"]
    if repair and drifted and not report["errors"]:
        applied = run_apply(inventory, [h["host"] for h in drifted])
        recheck = None
        try:
            recheck = run_check(inventory, [h["host"] for h in drifted])
        except DriftError as exc:
            report["errors"].append(f"re-check after the repair: {exc}")
        for h in drifted:
            h["restored"] = applied["changed"].get(h["host"], [])
            h["repaired_at"] = _now()
            left = ((recheck or {}).get("hosts", {}).get(h["host"]) or {})
            h["verify"] = left.get("verify") or h["verify"]
            if applied["failed"].get(h["host"]) or applied["rc"] != 0:
                h["status"] = "error"
                h["error"] = f"the repair failed: {', '.join(applied['failed'].get(h['host'], [])) or applied['log']}"
            elif left.get("error") or left.get("drift") or recheck is None:
                h["status"] = "error"
                h["error"] = "drift remains after the repair: " + ", ".join(
                    d["resource"] for d in left.get("drift") or []) if left.get("drift") else "re-check failed"
            else:
                h["status"] = "repaired"
                converged(h["host"])

    for h in hosts:
        report["drift"].extend(h["drift"])
    report["hosts"] = [{k: v for k, v in h.items() if k != "drift"} | {"drift_count": len(h["drift"])} for h in hosts]
    _save_state(state_dir, state)

    if report["errors"] or any(h["status"] == "error" for h in hosts) or check is None:
        code, status = EXIT_ERROR, "error"
    elif drifted:
        code, status = EXIT_DRIFT, "repaired" if repair else "drift"
    else:
        code, status = EXIT_OK, "no drift"
    report.update(exit_code=code, status=status, finished_at=_now())

    # The collector scrubbed its part; this covers the apply log and errors.
    secrets = _inventory_secrets(inventory)
    text = scrub(json.dumps(report, indent=2), secrets) + "\n"
    report = json.loads(text)
    _write_json(report_path, report)
    if state_dir and repair and (drifted or code == EXIT_ERROR):
        kept = state_dir / "reports" / f"{started.replace(':', '')}-{status.replace(' ', '-')}.json"
        _write_json(kept, report)
        report_path_for_notify = kept
    else:
        report_path_for_notify = report_path
    for line in _summary(report):
        print(scrub(line, secrets))
    for err in report["errors"]:
        print(scrub(err, secrets), file=sys.stderr)
    if repair:
        if code == EXIT_ERROR:
            _notify(notify_command, "failure", report_path_for_notify)
        elif any(h.get("change") == "corrective" for h in hosts):
            _notify(notify_command, "corrective", report_path_for_notify)
    return code


def _inventory_secrets(inventory: str) -> set[str]:
    """The secret values of the settings the inventory loads (no host is contacted)."""
    import runpy

    cwd = os.getcwd()
    try:
        os.chdir(BUNDLE_ROOT)
        runpy.run_path(inventory)
        return known_secrets()
    except Exception:  # noqa: BLE001 - bad settings: the dry run reports them
        return set()
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mcpedge.drift", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit codes: 0 no drift, 2 drift (repaired with --repair), 1 error, "
                                       "75 another run holds --lock")
    p.add_argument("inventory", nargs="?", default="inventory.py", help="pyinfra inventory (default: inventory.py)")
    p.add_argument("--report", default="drift-report.json", help="JSON report path (default: drift-report.json)")
    p.add_argument("--repair", action="store_true", help="apply when drift is found, then check again")
    p.add_argument("--check", action="store_true", help="check only (the default)")
    p.add_argument("--state-dir", help="record converged digests here; classify drift corrective/intentional")
    p.add_argument("--lock", help="flock this file; if another run holds it, exit 75 without doing anything")
    p.add_argument("--limit", action="append", default=[], help="only these hosts/groups (repeatable)")
    p.add_argument("--notify-command", help="run on a corrective change or a failure (default: "
                   "$MCP_EDGE_DRIFT_NOTIFY, else control.notify_command of the settings)")
    p.add_argument("--collect", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    inventory = os.path.abspath(args.inventory)
    if args.collect:
        os.chdir(BUNDLE_ROOT)
        _collect(args.collect, inventory, args.limit)
        return EXIT_ERROR  # main() exits by itself
    report = Path(args.report).resolve()
    state_dir = Path(args.state_dir).resolve() if args.state_dir else None

    lock_file = None
    if args.lock:
        lock_file = open(args.lock, "a")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                print(f"another drift run holds {args.lock}: nothing done")
                return EXIT_LOCKED
            raise
    try:
        notify = args.notify_command or os.environ.get("MCP_EDGE_DRIFT_NOTIFY")
        return drift(inventory, args.limit, args.repair and not args.check, state_dir, report, notify)
    finally:
        if lock_file:
            lock_file.close()


if __name__ == "__main__":
    sys.exit(main())
