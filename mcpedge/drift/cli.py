"""``python -m mcpedge.drift``: check, optionally repair, report; exit 0/2/1/75."""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import sys
from pathlib import Path

from . import __doc__ as _package_doc
from .collect import DriftError, collect_in_this_process, run_apply, run_check
from .report import (
    BUNDLE_ROOT,
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_OK,
    FORMAT,
    bundle_revision,
    classify,
    inventory_secrets,
    load_state,
    notify,
    now,
    save_state,
    scrub,
    summary,
    write_json,
)


def _host_entries(check: dict | None, records: dict, digest: str, revision: str, classified: bool) -> list[dict]:
    """One entry per host the dry run looked at: no drift, drift (corrective or intentional) or error."""
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
            if classified:
                entry["change"], entry["reason"] = classify(records.get(name), digest, revision)
        hosts.append(entry)
    return hosts


def _repair(inventory: str, drifted: list[dict], report: dict, converged) -> None:
    """Apply to the drifted hosts, check them again, and say for each whether it is repaired."""
    applied = run_apply(inventory, [h["host"] for h in drifted])
    recheck = None
    try:
        recheck = run_check(inventory, [h["host"] for h in drifted])
    except DriftError as exc:
        report["errors"].append(f"re-check after the repair: {exc}")
    for h in drifted:
        h["restored"] = applied["changed"].get(h["host"], [])
        h["repaired_at"] = now()
        left = (recheck or {}).get("hosts", {}).get(h["host"]) or {}
        h["verify"] = left.get("verify") or h["verify"]
        if applied["failed"].get(h["host"]) or applied["rc"] != 0:
            h["status"] = "error"
            h["error"] = f"the repair failed: {', '.join(applied['failed'].get(h['host'], [])) or applied['log']}"
        elif left.get("error") or left.get("drift") or recheck is None:
            h["status"] = "error"
            h["error"] = ("drift remains after the repair: " + ", ".join(d["resource"] for d in left["drift"])
                          if left.get("drift") else "re-check failed")
        else:
            h["status"] = "repaired"
            converged(h["host"])


def drift(inventory: str, limits: list[str], repair: bool, state_dir: Path | None, report_path: Path,
          notify_command: str | None = None) -> int:
    """Check (and with ``repair``, repair) every host; write the report; return the exit code."""
    started, revision = now(), bundle_revision()
    report = {"format": FORMAT, "mode": "repair" if repair else "check", "started_at": started,
              "inventory": inventory, "settings_file": None, "settings_digest": None, "bundle_revision": revision,
              "hosts": [], "drift": [], "errors": []}
    try:
        check = run_check(inventory, limits)
    except DriftError as exc:
        check = None
        report["errors"].append(str(exc))
    if check is not None:
        report.update(settings_file=check.get("settings_file"), settings_digest=check.get("settings_digest"))
        report["errors"] += check["errors"]
        if notify_command is None and check.get("control"):
            notify_command = check["control"].get("notify_command")
    state = load_state(state_dir)
    records = state.setdefault("hosts", {})

    def converged(name: str) -> None:
        records[name] = {"settings_digest": report["settings_digest"], "bundle_revision": revision,
                         "converged_at": now()}

    hosts = _host_entries(check, records, report["settings_digest"], revision, classified=state_dir is not None)
    for h in hosts:
        if h["status"] == "no drift":
            converged(h["host"])
    drifted = [h for h in hosts if h["status"] == "drift"]
    if repair and drifted and not report["errors"]:
        _repair(inventory, drifted, report, converged)
    for h in hosts:
        report["drift"].extend(h["drift"])
    report["hosts"] = [{k: v for k, v in h.items() if k != "drift"} | {"drift_count": len(h["drift"])} for h in hosts]
    save_state(state_dir, state)

    if report["errors"] or any(h["status"] == "error" for h in hosts) or check is None:
        code, status = EXIT_ERROR, "error"
    elif drifted:
        code, status = EXIT_DRIFT, "repaired" if repair else "drift"
    else:
        code, status = EXIT_OK, "no drift"
    report.update(exit_code=code, status=status, finished_at=now())
    _finish(report, report_path, inventory, state_dir, repair, started, notify_command,
            corrective=any(h.get("change") == "corrective" for h in hosts))
    return code


def _finish(report: dict, report_path: Path, inventory: str, state_dir: Path | None, repair: bool, started: str,
            notify_command: str | None, corrective: bool) -> None:
    """Write the report (and keep a copy of a repair's), print the summary, notify."""
    # The collector scrubbed its part; this covers the apply log and the errors.
    secrets = inventory_secrets(inventory)
    report = json.loads(scrub(json.dumps(report, indent=2), secrets))
    write_json(report_path, report)
    kept = report_path
    if state_dir and repair and (report["exit_code"] in (EXIT_DRIFT, EXIT_ERROR)):
        kept = state_dir / "reports" / f"{started.replace(':', '')}-{report['status'].replace(' ', '-')}.json"
        write_json(kept, report)
    for line in summary(report):
        print(scrub(line, secrets))
    for err in report["errors"]:
        print(scrub(err, secrets), file=sys.stderr)
    if repair:
        if report["exit_code"] == EXIT_ERROR:
            notify(notify_command, "failure", kept)
        elif corrective:
            notify(notify_command, "corrective", kept)


def _locked(path: str):
    """The lock file held open (flock), or None when another run holds it."""
    lock_file = open(path, "a")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return lock_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mcpedge.drift", description=_package_doc.split("\n\n")[0],
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
        collect_in_this_process(args.collect, inventory, args.limit)  # exits with pyinfra's status
    lock_file = None
    if args.lock:
        lock_file = _locked(args.lock)
        if lock_file is None:
            print(f"another drift run holds {args.lock}: nothing done")
            return EXIT_LOCKED
    try:
        notify_command = args.notify_command or os.environ.get("MCP_EDGE_DRIFT_NOTIFY")
        return drift(inventory, args.limit, args.repair and not args.check,
                     Path(args.state_dir).resolve() if args.state_dir else None, Path(args.report).resolve(),
                     notify_command)
    finally:
        if lock_file:
            lock_file.close()
