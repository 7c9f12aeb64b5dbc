"""The ``control:`` settings section and the drift-repair units of the control host.

A control host (a host in group ``control``; an operator's machine over SSH to
itself, or a management box) holds a checkout of this bundle with its settings,
SSH key and secrets, and runs ``python -m mcpedge.drift --repair`` from a
systemd timer. The section is registered here, next to what consumes it.
"""

from __future__ import annotations

import posixpath

from .escape import systemd_env_value
from .settings import AbsPath, Bool, Duration, Field, Nullable, Str, UserName, register_section

DRIFT_UNIT = "mcp-edge-drift"
DRIFT_LOCK = "/run/lock/mcp-edge-drift.lock"

CONTROL_SCHEMA = {
    "bundle_dir": Field(AbsPath(), "/opt/mcp-edge", "the bundle's checkout on the control host (the units run from it)"),
    "python": Field(Nullable(AbsPath()), None, "Python with the bundle's requirements; null = <bundle_dir>/.venv/bin/python"),
    "settings_file": Field(Nullable(AbsPath()), None, "settings file on the control host; null = <bundle_dir>/settings.yaml"),
    "inventory": Field(Str(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}\.py",
                           "a .py file path relative to bundle_dir (letters, digits, '.', '_', '-', '/'; no '..')"),
                       "inventory.py", "inventory file, relative to bundle_dir"),
    "environment_file": Field(
        Nullable(AbsPath()), None,
        "0600 file on the control host with the variables the settings name (env:NAME, *_password_env)",
    ),
    "user": Field(UserName(), "root", "user the drift service runs as"),
    "interval": Field(Duration(60, 7 * 86400), "30m", "time between drift checks"),
    "jitter": Field(Duration(0, 86400), "2m", "random delay added to each check (RandomizedDelaySec)"),
    "repair": Field(Bool(), True, "apply when drift is found (false: check and report only)"),
    "state_dir": Field(AbsPath(dedicated=True), "/var/lib/mcp-edge-drift", "reports and the last converged digests are kept here"),
    "notify_command": Field(
        Nullable(Str(max_len=4096)), None,
        "shell command run on a corrective change or a failure ($MCP_EDGE_DRIFT_EVENT, $MCP_EDGE_DRIFT_REPORT)",
    ),
}

register_section("control", CONTROL_SCHEMA, group=True)


def control_context(ctl: dict) -> dict:
    """Template context of the drift service and timer."""
    bundle = ctl["bundle_dir"]
    return {
        "unit": DRIFT_UNIT,
        "bundle_dir": bundle,
        "python": ctl["python"] or posixpath.join(bundle, ".venv/bin/python"),
        "settings_env": systemd_env_value(ctl["settings_file"] or posixpath.join(bundle, "settings.yaml")),
        "inventory": ctl["inventory"],
        "environment_file": ctl["environment_file"],
        "user": ctl["user"],
        "interval": ctl["interval"],
        "jitter": ctl["jitter"],
        "mode": "--repair" if ctl["repair"] else "--check",
        "state_dir": ctl["state_dir"],
        "lock": DRIFT_LOCK,
        # systemd expands % specifiers in unit files, also inside Environment=
        "notify_env": systemd_env_value(ctl["notify_command"]).replace("%", "%%") if ctl["notify_command"] else None,
    }
