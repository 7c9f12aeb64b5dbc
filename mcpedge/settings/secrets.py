"""Secrets that never print themselves: :class:`Secret` and :func:`reveal`.

A :class:`Secret` holds what the settings read from this machine (a variable
named by ``env:NAME`` or ``*_password_env``, a sudo password file); it prints
as a mask everywhere and is unwrapped only where it is written to a host.
Reading one from the environment is a kind's job (``environment.py``); this
module imports nothing of the package, so every other module may use it.
"""

from __future__ import annotations

import hashlib
from typing import Any


class Secret:
    """A secret value (sudo password, token, ``env:`` value) that never prints itself.

    It is deliberately *not* a str: ``str()``, f-strings, ``repr()`` and pyinfra's
    JSON output (``debug-inventory``, ``--debug-operations``) all show a mask, so a
    secret that reaches host data or a log by accident stays hidden. The value is
    read only where it is written to a host, with :meth:`reveal`.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = ""):
        object.__setattr__(self, "_value", str(value))
        object.__setattr__(self, "source", source)  # where it came from (env:NAME, a file), never the value

    def reveal(self) -> str:
        return self._value

    def digest(self) -> str:
        """A stable digest of the value (change detection without the value)."""
        return "sha256:" + hashlib.sha256(self._value.encode()).hexdigest()

    def __setattr__(self, name, value):  # immutable, like the str it replaces
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<secret>"

    def to_json(self) -> str:  # pyinfra_cli.util.json_encode calls this
        return "<secret>"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("mcp-edge-secret", self._value))

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def __reduce__(self):  # never pickled into a cache or a report
        raise TypeError("a Secret cannot be pickled")


def reveal(value: Any) -> Any:
    """The real value of a :class:`Secret`; any other value unchanged."""
    return value.reveal() if isinstance(value, Secret) else value
