"""Everything mcp-edge changes in, or reads from the inside of, pyinfra: one place.

pyinfra 3.10.0 is pinned (requirements.txt); these patches and readings are
written against it, so :func:`install` refuses any other version with a clear
message instead of half-working.

- :mod:`.sudo_askpass`: the sudo password reaches sudo through a 0700 askpass
  script written through stdin, never a command line (pyinfra 3.10 puts it in
  the remote process list).
- :mod:`.fact_cache`: a fact's answer is read once per host while nothing has
  changed there, and a converged host's facts are read in one command.
- :func:`operation_call`: the operation function and arguments behind a
  planned operation (pyinfra keeps them only in a closure), for the drift
  report's descriptions.
- :func:`observe` / :func:`attach` / :func:`host_prepared`: hand a caller's
  observer (the drift check's collector) each host's planned operations at
  the end of deploy.py, while the host is still connected. pyinfra's state
  callbacks fire on connect and disconnect and around executed operations,
  none between preparing a dry run and disconnecting, which is when a drift
  report has to read the facts it compares.

Called explicitly: :func:`install` from the inventory files (every pyinfra
command loads one first), :func:`attach` and :func:`host_prepared` from deploy.py.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

PINNED = "3.10.0"

_installed = False
_observers: dict[str, object] = {}  # role -> observer, for the run this process starts next
_ATTACHED = "_mcp_edge_observers"


class PyinfraVersionError(SystemExit):
    """Not the pyinfra the bundle's patches are written for (a one-line exit, no traceback)."""


def check_version() -> str:
    try:
        found = version("pyinfra")
    except PackageNotFoundError:
        found = "none"
    if found != PINNED:
        raise PyinfraVersionError(
            f"mcp-edge needs pyinfra {PINNED} (requirements.txt), found {found}: "
            f"its sudo and fact patches are written for that version; run `pip install -r requirements.txt`")
    return found


def install() -> None:
    """Check the pyinfra version, then install the patches (idempotent)."""
    global _installed
    if _installed:
        return
    check_version()
    from . import fact_cache, sudo_askpass

    sudo_askpass.install()
    fact_cache.install()
    _installed = True


def observe(role: str, observer) -> None:
    """Have ``observer`` see the next run of this process: ``observer.attach(state)``
    once, then ``observer.host_prepared(state, host)`` per host (see :func:`attach`)."""
    _observers[role] = observer


def attach() -> None:
    """Start the requested observers on the current pyinfra state, once (deploy.py's first line).
    (The CLI makes its state before loading the inventory and resets it after.)"""
    from pyinfra import state

    if getattr(state, _ATTACHED, None) is None:
        setattr(state, _ATTACHED, dict(_observers))
        for observer in _observers.values():
            observer.attach(state)


def observer(role: str):
    """The observer attached to the current run under ``role``, or None (an ordinary run)."""
    from pyinfra import state

    return (getattr(state, _ATTACHED, None) or {}).get(role)


def host_prepared() -> None:
    """deploy.py's last line: every operation of this host is planned; observers may look."""
    from pyinfra import state
    from pyinfra.context import ctx_host

    for obs in (getattr(state, _ATTACHED, None) or {}).values():
        obs.host_prepared(state, ctx_host.get())  # the host itself, not pyinfra's proxy


def operation_call(op_data) -> tuple:
    """``(function, kwargs)`` behind a planned operation (``state.ops[host][op_hash]``).

    pyinfra 3.10 keeps them only in the closure of ``op_data.command_generator``
    (``pyinfra/api/operation.py``): read there, and nowhere else in the bundle."""
    fn = op_data.command_generator
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
    return cells.get("func"), cells.get("kwargs") or {}
