"""How a validated value is written into the file it lands in.

The settings refuse what no file can hold safely (control characters, shell
and nginx syntax in paths ...); these helpers write the rest in the syntax of
its destination.
"""

from __future__ import annotations


def systemd_env_value(value: str) -> str:
    """Quote a value for a systemd ``Environment=``/``EnvironmentFile`` line
    (double quotes, backslash escapes; ``%`` is a unit-file specifier)."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def host_port(host: str, port: int) -> str:
    """``host:port`` as nginx and Docker read it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
