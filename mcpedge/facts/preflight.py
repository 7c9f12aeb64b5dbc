"""Read-only checks before a host is changed: sudo, free disk, listening ports."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class SudoUser(FactBase):
    """The user commands run as with the deploy's privileges (``root`` when sudo
    works); ``None`` when the command could not run. Read it with
    ``_ignore_errors=True`` so a broken sudo is reported, not raised."""

    @staticmethod
    def default():
        return None

    def command(self):
        return "id -un"

    def process(self, output):
        return output[0].strip() if output else None


class FreeDisk(FactBase):
    """Free space of the file system holding each path (the nearest existing
    parent of a path not created yet): ``{path: {"free": bytes, "mount": str}}``."""

    @staticmethod
    def default():
        return {}

    def command(self, paths):
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (f'for p in {quoted}; do d="$p"; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; '
                'df -Pk "$d" | awk -v p="$p" \'NR == 2 { print p, $4, $6 }\'; done')

    def process(self, output):
        result = {}
        for line in output:
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit():
                result[parts[0]] = {"free": int(parts[1]) * 1024, "mount": parts[2]}
        return result


class ListeningPorts(FactBase):
    """TCP listeners: ``[{"port", "address", "process", "user"}]``. The process
    name comes from ``ss -p`` (may be empty when it belongs to another user and
    ptrace is restricted), the user from the socket's owner (empty: root).
    ``None`` where ``ss`` is missing."""

    @staticmethod
    def default():
        return None

    def requires_command(self):
        return "ss"

    def command(self):
        return ("ss -ltnpeH | while read -r _s _r _q local _peer rest; do "
                'name=$(echo "$rest" | sed -n "s/.*users:((\\"\\([^\\"]*\\)\\".*/\\1/p"); '
                'uid=$(echo "$rest" | sed -n "s/.*uid:\\([0-9]*\\).*/\\1/p"); '
                'user=""; [ -n "$uid" ] && user=$(getent passwd "$uid" | cut -d: -f1); '
                'echo "$local ${name:--} ${user:-${uid:--}}"; done; echo __end')

    def process(self, output):
        result = []
        for line in output:
            parts = line.split()
            if len(parts) != 3:
                continue
            address, _, port = parts[0].rpartition(":")
            if port.isdigit():
                result.append({"port": int(port), "address": address.strip("[]"),
                               "process": parts[1].strip("-"), "user": parts[2].strip("-")})
        return result
