"""Pre-flight: refuse a host that cannot take the deploy, before anything changes."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, operation

from ..facts.preflight import FreeDisk, ListeningPorts, SudoUser


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def check_free_disk(paths, min_free):
    """Raise when a file system holding one of ``paths`` has less than ``min_free`` bytes."""
    free = host.get_fact(FreeDisk, paths=list(paths))
    for path in paths:
        info = free.get(path)
        if info is None:
            raise OperationError(f"{host.name}: could not read the free space of {path} (df)")
        if info["free"] < min_free:
            raise OperationError(
                f"{host.name}: only {_gib(info['free'])} free on {info['mount']} (holding {path}); the deploy needs "
                f"at least {_gib(min_free)} (preflight.min_free_disk). Free some space, then run again.")


def check_ports(wanted, ours):
    """Raise when a port in ``wanted`` ({port: what}) is held by a listener ``ours(listener)`` rejects."""
    listeners = host.get_fact(ListeningPorts)
    if listeners is None:
        return "ss missing: listening ports not checked"
    for listener in listeners:
        what = wanted.get(listener["port"])
        if what and not ours(listener):
            raise OperationError(
                f"{host.name}: port {listener['port']} ({what}) is already taken by "
                f"{listener['process'] or 'a process'} (user {listener['user'] or 'root'}) on {listener['address']}; "
                f"stop it or choose another port in the settings.")
    return "ports free or ours"


@operation()
def ubuntu_preflight(min_free_disk, disk_paths, nginx_ports=(80, 443)):
    """
    Refuse to touch an Ubuntu/Debian host that cannot take the deploy, before
    anything changes: sudo works, enough free disk on ``disk_paths``, and the
    nginx ports are free or held by nginx. (The gateway listens on a unix
    socket systemd holds: no port to collide.) Changes nothing.

    + min_free_disk: bytes each of ``disk_paths`` needs free
    + disk_paths: file systems to check
    + nginx_ports: the ports nginx must be able to listen on

    .. code:: python

        ubuntu_preflight(name="Pre-flight", min_free_disk=1 << 30, disk_paths=["/", "/var"])
    """
    user = host.get_fact(SudoUser, _ignore_errors=True)
    if user != "root":
        raise OperationError(
            f"{host.name}: sudo does not work for {host.data.get('ssh_user')} (commands ran as {user or 'nothing'}); "
            "check ssh.sudo_password_env / ssh.sudo_password_file or the host's sudoers rule.")
    check_free_disk(disk_paths, min_free_disk)
    ports = check_ports({p: "nginx" for p in nginx_ports}, lambda listener: listener["process"] == "nginx")
    host.noop(f"pre-flight passed (sudo, disk, {ports})")
    yield from ()  # checks only: never a command
