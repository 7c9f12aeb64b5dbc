"""The drift-repair units of the control host.

A control host (a host in group ``control``; an operator's machine over SSH to
itself, or a management box) holds a checkout of this bundle with its settings,
SSH key and secrets, and runs ``python -m mcpedge.drift --repair`` from a
systemd timer. Its ``control:`` settings section is declared with the others,
in ``mcpedge/settings/schema.py`` (CONTROL_SCHEMA); this module renders the
normalized section into the units' template context.
"""

from __future__ import annotations

import posixpath

from .escape import systemd_env_value

DRIFT_UNIT = "mcp-edge-drift"
DRIFT_LOCK = "/run/lock/mcp-edge-drift.lock"


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
