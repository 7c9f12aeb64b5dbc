"""Keep the sudo password off the target's process list.

pyinfra 3.10 runs ``env SUDO_ASKPASS=<script> PYINFRA_SUDO_PASSWORD=<password>
sudo -A ...``: the password is in the argv of the remote shell and of ``env``,
which any local user can read with ``ps`` while the command starts (the
hardening test caught it). Here the askpass script itself holds the password:
it is written through stdin (never a command line) into a 0700 file of the
login user (in ``$XDG_RUNTIME_DIR``, else ``$TMPDIR`` or /tmp like pyinfra's
own), and the command line carries a placeholder. pyinfra removes the script on disconnect,
as it removes its own.

Installed by :func:`mcpedge.pyinfra_compat.install` (pyinfra 3.10.0 only).
"""

from __future__ import annotations

from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors import util as _util

from ..settings import (
    reveal as _reveal,  # the settings hand the password over as a masked Secret
)

_PLACEHOLDER = "-"  # what the command line carries instead of the password
# In the login session's runtime directory when there is one (a tmpfs that
# logind removes when the session ends, even after a dropped connection), else
# in the temp directory, where scripts left by dropped runs over 12 h old go.
_CREATE = (
    "umask 077; d=${{XDG_RUNTIME_DIR:-}}; if [ -z \"$d\" ] || [ ! -w \"$d\" ]; then d=${{TMPDIR:={0}}}; "
    "find \"$d\" -maxdepth 1 -name 'mcp-edge-askpass-*' -user \"$(id -u)\" -mmin +720 -exec rm -f {{}} + "
    "2>/dev/null; fi; "
    "t=$(mktemp \"$d/mcp-edge-askpass-XXXXXXXXXXXX\") && "
    "{{ echo '#!/bin/sh'; echo \"cat <<'__MCP_EDGE_ASKPASS__'\"; cat; echo '__MCP_EDGE_ASKPASS__'; }} > \"$t\" && "
    "chmod 700 \"$t\" && echo \"$t\""
)


def _askpass_holding(host, password: str, temp_dir: str | None) -> str:
    effective = temp_dir or host.get_temp_dir_config()
    key = f"sudo_askpass_path__mcp-edge__{effective}"  # pyinfra's cleanup removes sudo_askpass_path__*
    cached = host.connector_data.get(key)
    if cached:
        return cached
    ok, output = host.run_shell_command(_CREATE.format(effective), _stdin=_reveal(password) + "\n")
    if not ok or not output.stdout_lines:
        raise PyinfraError(f"could not write the sudo askpass script: {output.output}")
    host.connector_data[key] = output.stdout_lines[0]
    return output.stdout_lines[0]


_original = _util.make_unix_command_for_host


def make_unix_command_for_host(state, host, command, **arguments):
    if arguments.get("_sudo"):
        password = arguments.get("_sudo_password") or host.connector_data.get("prompted_sudo_password")
        if password and password != _PLACEHOLDER:
            arguments["_sudo_password"] = _PLACEHOLDER  # keeps sudo -A -k; the script holds the secret
            arguments["_sudo_askpass_path"] = _askpass_holding(host, password, arguments.get("_temp_dir"))
            if arguments.get("_su_user") and arguments.get("_su_password"):
                arguments["_su_askpass_path"] = _util._ensure_su_askpass_set_for_host(
                    host, temp_dir=arguments.get("_temp_dir"))
            return _util.make_unix_command(command, **arguments)
    return _original(state, host, command, **arguments)


def install() -> None:
    """Route pyinfra's connectors through make_unix_command_for_host above (idempotent)."""
    from pyinfra.connectors import local, ssh

    for module in (_util, ssh, local):
        module.make_unix_command_for_host = make_unix_command_for_host
