"""Kinds for paths: on the target (AbsPath, Volume, DockerCli) and on this machine (LocalPath).

A path on the target lands in nginx, systemd units, shell scripts and Docker
arguments, so it is plain characters only and never ``..``; one the bundle
creates, owns or makes writable (``AbsPath(dedicated=True)``) may not be a
system directory (SYSTEM_DIRS) nor sit in a system tree (SYSTEM_TREES). A
bind mount (Volume) may not hand a container the host. LocalPath is a file
on the control machine, relative to the settings file.
"""

from __future__ import annotations

import os
import re

from .kinds import Kind, _ascii_fullmatch, _Invalid, _show

# A path component the bundle writes into nginx, systemd units, shell scripts
# and Docker arguments: no space, quote, ';', '{', '}', '#', '$', '%', '\\' or glob.
_PATH_PART = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*", re.ASCII)

# Directories a path the bundle owns, chowns or makes writable may not be
# (nor be above): the system's own.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib",
    "/usr/local", "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/sbin", "/usr/share", "/var",
    "/var/cache", "/var/lib", "/var/log", "/var/run", "/var/tmp", "/var/www", "/var/spool", "/var/mail",
})
# Trees the bundle never makes writable for anyone (its own config is in /etc/mcp-edge).
SYSTEM_TREES = ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/run", "/bin", "/sbin", "/lib", "/lib64",
                "/root", "/var/lib/mcp-edge/nginx", "/var/log")


class AbsPath(Kind):
    """An absolute POSIX path on the target, of plain characters (no '..').

    ``dedicated=True``: a directory the bundle creates, owns or makes writable:
    it must not be, nor sit inside, a system directory. ``under``: it must sit
    inside one of these trees (e.g. a NAS data volume)."""

    def __init__(self, dedicated: bool = False, under: tuple[str, ...] = (), expected: str = ""):
        self.dedicated, self.under = dedicated, under
        self.expected = expected or "an absolute path starting with '/' (letters, digits, '.', '_', '-', '@', '+')"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.startswith("/") or len(value) > 1024:
            self.fail(value)
        parts = [p for p in value.split("/") if p and p != "."]
        if ".." in parts:
            raise _Invalid(f"expected an absolute path without '..' components, got {_show(value)}")
        if not all(_ascii_fullmatch(_PATH_PART, p) and len(p) <= 255 for p in parts):
            self.fail(value)
        path = "/" + "/".join(parts)
        if self.under and not any(path.startswith(u.rstrip("/") + "/") for u in self.under):
            raise _Invalid(f"expected a path inside {' or '.join(self.under)}, got {_show(value)}")
        if self.dedicated:
            if path in SYSTEM_DIRS or any(path == t or path.startswith(t + "/") for t in SYSTEM_TREES):
                raise _Invalid(f"{path!r} is a system directory (or inside one): the bundle creates and owns "
                               "this directory, so give one of its own, like /var/lib/mcp-edge/<name> or /srv/<name>")
        return path


class LocalPath(Kind):
    """A path on the control machine: ``~`` expanded, relative to the settings file's directory.

    ``private=True``: a file holding a secret; refused when others can read it."""

    def __init__(self, must_exist: bool = False, readable: bool = False, missing_hint: str = "",
                 private: bool = False):
        self.must_exist = must_exist or readable or private
        self.missing_hint = missing_hint
        self.readable = readable or private
        self.private = private
        self.expected = "a file path on this machine"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            self.fail(value)
        path = os.path.expanduser(value)
        path = os.path.abspath(os.path.join(ctx.base_dir, path))
        shown = repr(path) if path == value else f"{path!r} (from {value!r})"
        if self.must_exist:
            if not os.path.exists(path):
                raise _Invalid(f"file {shown} does not exist{self.missing_hint}")
            if not os.path.isfile(path):
                raise _Invalid(f"{shown} is not a regular file")
        if self.readable and not os.access(path, os.R_OK):
            raise _Invalid(f"file {shown} is not readable")
        if self.private and os.stat(path).st_mode & 0o077:
            mode = oct(os.stat(path).st_mode & 0o777)[2:]
            raise _Invalid(f"file {shown} holds a secret but others may read it (mode {mode}): chmod 600 it")
        return path


# Mounting these into a container hands it the host: the Docker daemon, the
# kernel's view, devices, DSM's configuration.
_FORBIDDEN_MOUNTS = ("/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/proc", "/sys", "/dev",
                     "/etc", "/usr", "/root", "/boot", "/var/packages", "/usr/syno")


class Volume(Kind):
    """A Docker bind mount ``/volumeN/path:/container/path[:ro|rw]`` on a NAS data volume."""

    expected = "a bind mount '/volumeN/path:/container/path' with an optional ':ro' or ':rw'"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        parts = value.split(":")
        if len(parts) == 2:
            parts.append("rw")
        if len(parts) != 3 or not all(p.startswith("/") for p in parts[:2]) or parts[2] not in ("ro", "rw"):
            self.fail(value)
        try:
            source = AbsPath()(parts[0], ctx)
            target = AbsPath()(parts[1], ctx)
        except _Invalid as e:
            raise _Invalid(f"{e.message} (in the bind mount {_show(value)})") from None
        if any(source == f or source.startswith(f + "/") or f.startswith(source + "/") or source == "/"
               for f in _FORBIDDEN_MOUNTS):
            raise _Invalid(f"bind mount source {source!r} would hand the container the host (Docker socket, "
                           "system directories); mount a folder of a data volume instead")
        if not re.fullmatch(r"/volume[0-9]+/.+", source, re.ASCII):
            raise _Invalid(f"bind mount source {source!r} is not on a NAS data volume (/volume1/...)")
        if target == "/":
            raise _Invalid(f"bind mount target '/' would replace the container's root ({_show(value)})")
        return f"{source}:{target}:{parts[2]}"


class DockerCli(AbsPath):
    expected = "'auto' or an absolute path"

    def __init__(self):
        super().__init__(expected=self.expected)

    def __call__(self, value, ctx):
        return value if value == "auto" else super().__call__(value, ctx)
