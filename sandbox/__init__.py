"""The local test bench (the sandbox): real Linux targets in containers, a real ACME CA.

Everything is built locally from Debian packages (debootstrap + docker import),
cached by a hash of its recipe, and reached only over loopback or the bench's
own Docker network:

- ``mcp-edge-acme``: Pebble + pebble-challtestsrv (DNS for the validation
  authority), its TLS listener signed by a throw-away bench CA.
- ``mcp-edge-gw1``: a bare Debian trixie host (systemd as PID 1, sshd, a sudo
  user whose sudo needs a password); SSH on 127.0.0.1:2222, HTTP(S) on
  127.0.0.2:80/443, resolved as ``mcp.sandbox.test`` through a managed block in
  /etc/hosts.
- ``mcp-edge-nas1``: the DSM simulator (``images/dsm``, every behaviour citing
  docs/dsm.md); ``control.py``: a control host for the drift timer.

State (keys, CA, generated settings, endpoints.json) lives in ``.sandbox/``.
Used by the tests (``tests/``) and the benchmark (``bench/``):
``python -m sandbox up|sandbox|down``.

Modules: :mod:`.layout` (names, slots, ports, paths), :mod:`.docker`,
:mod:`.state` (keys, CA, passwords), :mod:`.targets` (starting and provisioning
the machines), :mod:`.settings` (the settings it writes), :mod:`.lifecycle` (up,
down, pyinfra against it).
"""

from .docker import built_image
from .layout import (
           LEGACY_DOMAIN,
           ROOT,
           SLOT,
           STATE,
           TARGETS,
           VOLUME,
           Target,
           log,
           remove_targets,
           run,
           set_extra_targets,
           target_exec,
)
from .lifecycle import apply, down, pyinfra, sandbox, up
from .settings import SETTINGS_OVERRIDES, settings_dict, write_endpoints, write_settings
from .state import sudo_password
from .targets import dsm_regenerate

__all__ = ["LEGACY_DOMAIN", "ROOT", "SETTINGS_OVERRIDES", "SLOT", "STATE", "TARGETS", "VOLUME", "Target", "apply",
           "built_image", "down", "dsm_regenerate", "log", "pyinfra", "remove_targets", "run", "sandbox",
           "set_extra_targets", "settings_dict", "sudo_password", "target_exec", "up", "write_endpoints",
           "write_settings"]
