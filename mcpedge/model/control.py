"""The model of a control host: the drift check and repair units it runs.

A control host (a host in group ``control``; an operator's machine over SSH to
itself, or a management box) holds a checkout of this bundle with its settings,
SSH key and secrets, and runs ``python -m mcpedge.drift --repair`` from a
systemd timer. Its ``control:`` settings section is declared with the others
(``mcpedge/settings/schema.py``); this renders it into the units' ``ctl``.
"""

from __future__ import annotations

import posixpath

from ..escape import systemd_env_value
from .paths import DRIFT_LOCK, DRIFT_UNIT


def control_host(ctl: dict) -> dict:
    """``ctl`` of the drift service and timer templates."""
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
