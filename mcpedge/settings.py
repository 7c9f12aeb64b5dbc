"""Read and validate the operator's settings file before any host is contacted.

The file (``settings.yaml``, or ``$MCP_EDGE_SETTINGS``) has these top-level
sections::

    ssh:      how pyinfra reaches the hosts (defaults for every host)
    hosts:    a list of hosts: name, group, address, domain + any ``ssh`` key
    ubuntu:   settings of the hosts in group ``ubuntu`` (one section per group)

The schema below is the documented reference of every setting: each key is a
:class:`Field` with a kind (how the value is checked and normalized), a default
written the way an operator would write it in YAML, and a one-line doc.
``iter_fields()`` and ``DEFAULTS`` expose it to doc generators.

Every problem is reported as ``<file>: <dotted.key>: <what was expected>``;
all problems found are raised together in one :class:`SettingsError`.

Each value is checked for the place it lands in on a host (an nginx
directive, a systemd unit line, a shell word, an env file, a Docker argument):
what passes here needs no escaping there. No value may hold a control
character; numbers are read in plain decimal only (YAML 1.1 would read ``022``
as 18 and ``1:30`` as 90); secrets are :class:`Secret` objects that print as a
mask everywhere (pyinfra's ``debug-inventory`` included).

Sections are registered with :func:`register_section`; a ``synology`` section
(``group=True``) or a ``control`` section (``group=False``) is added the same
way as ``ubuntu`` below.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import ipaddress
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import yaml

from .escape import host_port  # noqa: F401 (part of this module's interface)

__all__ = [
    "ACME_DIRECTORIES",
    "DEFAULTS",
    "GROUP_SCHEMAS",
    "HOST_SCHEMA",
    "RESERVED_GROUPS",
    "SSH_SCHEMA",
    "SYNOLOGY_SCHEMA",
    "UBUNTU_SCHEMA",
    "Field",
    "HostSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "current",
    "iter_fields",
    "known_groups",
    "host_port",
    "inventory_or_exit",
    "load",
    "register_section",
    "reveal",
    "size_bytes",
    "use",
]

ENV_VAR = "MCP_EDGE_SETTINGS"
DEFAULT_PATH = "settings.yaml"


# --- Errors and secrets --------------------------------------------------------


class SettingsError(ValueError):
    """One or more problems in the settings file, one ``file: key: message`` a line."""

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = _Sentinel("REQUIRED")  # Field default: the key must be given
INHERIT = _Sentinel("INHERIT")  # Field default in a host entry: take it from `ssh:`
_INVALID = _Sentinel("_INVALID")  # placeholder for a value that failed validation


class _Invalid(Exception):
    """Raised by a kind: ``message`` is reported at the field's key + ``at``."""

    def __init__(self, message: str, at: str = ""):
        super().__init__(message)
        self.message = message
        self.at = at


class YamlScalar:
    """A YAML scalar the loader refused to guess: YAML 1.1 reads ``022`` as 18,
    ``1:30`` as 90 and ``0x1f`` as 31, and a 5,000-digit number cannot become
    an int. Kept as its text so the problem is reported at its key."""

    def __init__(self, text: str, problem: str):
        self.text, self.problem = text, problem

    def __repr__(self) -> str:
        return self.text


def _show(value: Any) -> str:
    """How a bad value is quoted in an error message (YAML-ish, never too long)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return "a secret"
    if isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= 120 else shown[:100] + "...' (" + str(len(value)) + " characters)"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, YamlScalar):
        return value.text if len(value.text) <= 40 else value.text[:20] + f"... ({len(value.text)} characters)"
    if isinstance(value, int) and abs(value) > 10**15:
        return f"a number of {len(str(abs(value)))} digits"
    return repr(value)


# Characters no value may hold, whatever file it lands in: C0/C1 controls (a
# newline starts a new directive or unit line), Unicode line separators, and
# invisible format characters (zero-width, bidirectional overrides).
def _forbidden_char(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return f"U+{ord(ch):04X}"
    return None


# --- Kinds: how one value is checked and normalized ---------------------------------


class _Context:
    """What kinds may need: the settings file's directory and the environment."""

    def __init__(self, base_dir: str, environ: dict[str, str]):
        self.base_dir = base_dir
        self.environ = environ


class Kind:
    """Checks one value and returns it normalized; raises _Invalid otherwise.

    Every kind is written for the place its value lands in (an nginx directive,
    a systemd unit line, a shell word, an env file, JSON): it accepts only what
    is valid *and* harmless there, so no template needs to escape anything."""

    expected = "a value"

    def __call__(self, value: Any, ctx: _Context) -> Any:  # pragma: no cover
        raise NotImplementedError

    def fail(self, value: Any, hint: str = "") -> None:
        raise _Invalid(f"expected {self.expected}, got {_show(value)}{hint}")


def _ascii_fullmatch(pattern: re.Pattern, value: str) -> bool:
    # re.ASCII: \d and \w would otherwise accept Unicode digits and letters
    # ('１０r/s') that nginx, systemd and the shell do not read as the operator meant.
    return pattern.fullmatch(value) is not None


class Str(Kind):
    def __init__(self, pattern: str | None = None, expected: str = "a non-empty string", max_len: int = 1024):
        self.pattern = re.compile(pattern, re.ASCII) if pattern else None
        self.expected = expected
        self.max_len = max_len

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.strip():
            self.fail(value)
        if len(value) > self.max_len:
            raise _Invalid(f"expected at most {self.max_len} characters, got {len(value)}")
        if self.pattern and not _ascii_fullmatch(self.pattern, value):
            self.fail(value)
        return value


class Bool(Kind):
    expected = "true or false (an unquoted YAML boolean)"

    def __call__(self, value, ctx):
        if not isinstance(value, bool):
            self.fail(value)
        return value


class Int(Kind):
    """A whole number within bounds (every integer lands somewhere with a limit)."""

    def __init__(self, min: int = 0, max: int = 2**31 - 1, expected: str = ""):
        self.min, self.max = min, max
        self.expected = expected or f"an integer between {min} and {max}"

    def __call__(self, value, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value)
        if not self.min <= value <= self.max:
            self.fail(value)
        return value


class Port(Int):
    def __init__(self):
        super().__init__(1, 65535, "a port number between 1 and 65535")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)


def _fmt_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Duration(Kind):
    """``30s``, ``5m``, ``24h``, ``7d`` or bare integer seconds -> int seconds, within bounds
    (Node's timers overflow past 24.8 days; nginx and systemd have their own limits)."""

    def __init__(self, min: int = 0, max: int = 7 * 86400):
        self.min, self.max = min, max
        self.expected = (f"a duration like '30s', '5m', '24h' or '7d' (or whole seconds) "
                         f"between {_fmt_duration(min)} and {_fmt_duration(max)}")

    def __call__(self, value, ctx):
        if isinstance(value, bool):
            self.fail(value)
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
            seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            self.fail(value)
        if not self.min <= seconds <= self.max:
            self.fail(value)
        return seconds


class Choice(Kind):
    """A duration from a fixed set (DSM's Task Scheduler repeats only every 1, 5, 10, 15, 20 or 30 min)."""

    def __init__(self, seconds: tuple[int, ...], why: str):
        self.duration = Duration(min(seconds), max(seconds))
        self.seconds = seconds
        self.expected = f"one of {', '.join(_fmt_duration(s) for s in seconds)} ({why})"

    def __call__(self, value, ctx):
        try:
            seconds = self.duration(value, ctx)
        except _Invalid:
            self.fail(value)
        if seconds not in self.seconds:
            self.fail(value)
        return seconds


_RATE = re.compile(r"([0-9]{1,6})r/([sm])", re.ASCII)


class Rate(Kind):
    """An nginx ``limit_req_zone`` rate, kept as the string nginx expects."""

    expected = "a rate like '10r/s' or '600r/m' (1 to 100000 requests)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not (m := _RATE.fullmatch(value)) or not 1 <= int(m.group(1)) <= 100000:
            self.fail(value)
        return f"{int(m.group(1))}r/{m.group(2)}"


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]{1,15})([kKmMgGtT]?)", re.ASCII)


def _fmt_size(n: int) -> str:
    for unit in ("t", "g", "m", "k"):
        if n >= _SIZE_UNITS[unit] and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return str(n)


class Size(Kind):
    """A size (``512k``, ``4m``, ``1g`` or bytes) within bounds, kept as nginx writes it."""

    def __init__(self, min: int = 0, max: int = 1 << 40):
        self.min, self.max = min, max
        self.expected = f"a size like '512k', '4m' or '1g' (or whole bytes) between {_fmt_size(min)} and {_fmt_size(max)}"

    def __call__(self, value, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            self.fail(value)
        m = _SIZE.fullmatch(text)
        if not m:
            self.fail(value)
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if not self.min <= n <= self.max:
            self.fail(value)
        return f"{int(m.group(1))}{m.group(2).lower()}"


def size_bytes(size: str) -> int:
    """A size from the settings ('1g', '512m', '4096') in bytes."""
    m = _SIZE.fullmatch(size)
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def _is_dns_name(name: str, min_labels: int) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= min_labels
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


class Domain(Kind):
    """A fully qualified DNS name (RFC 1123 labels, at least one dot), lowercased."""

    expected = "a DNS name like 'mcp.example.com' (letters, digits and '-', at least one dot, no trailing dot)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii() or not _is_dns_name(value.lower(), 2):
            self.fail(value)
        return value.lower()


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Address(Kind):
    """What SSH or nginx connects to: an IP address or a DNS name (a single label is fine)."""

    expected = "an IP address or a DNS name (IPv6 without brackets)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii():
            self.fail(value)
        ip = _ip(value)
        if ip:
            return ip
        if not _is_dns_name(value.lower(), 1):
            self.fail(value)
        return value.lower()


class IpAddress(Kind):
    """An IP address (a Docker ``-p`` binding takes no name)."""

    expected = "an IP address like '127.0.0.1' or '::1' (IPv6 without brackets)"

    def __call__(self, value, ctx):
        ip = _ip(value) if isinstance(value, str) and value.isascii() else None
        if ip is None:
            self.fail(value)
        return ip


class Email(Kind):
    expected = "an email address like 'ops@example.com'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or value.count("@") != 1 or len(value) > 254:
            self.fail(value)
        local, domain = value.split("@")
        # Narrower than RFC 5322 on purpose: the address lands in certbot's
        # command line and its renewal file; these characters are safe in both.
        if not re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}", local, re.ASCII) or not _is_dns_name(domain.lower(), 2):
            self.fail(value)
        return f"{local}@{domain.lower()}"


# What a URL path and query may hold: RFC 3986 unreserved and a few sub-delims.
# No quote, space, ';' or '#': the URL lands in shell words, certbot's files and nginx.
_URL_REST = re.compile(r"[A-Za-z0-9._~%/:@=&?+-]*", re.ASCII)


class HttpsUrl(Kind):
    expected = "an https:// URL (host, optional port and path)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii() or len(value) > 2048:
            self.fail(value)
        try:
            parts = urlsplit(value)
            port = parts.port  # raises ValueError for a port out of range
            host = parts.hostname
        except ValueError:
            self.fail(value)
        if parts.scheme != "https" or not host or parts.username or parts.password or parts.fragment:
            self.fail(value)
        if not (_ip(host) or _is_dns_name(host, 1)) or (port is not None and not 1 <= port <= 65535):
            self.fail(value)
        rest = value[len(f"https://{parts.netloc}"):]
        if not _ascii_fullmatch(_URL_REST, rest):
            self.fail(value)
        return value


ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


class AcmeServer(HttpsUrl):
    """``letsencrypt``, ``letsencrypt-staging`` or an https ACME directory URL -> URL."""

    expected = "'letsencrypt', 'letsencrypt-staging' or an https:// ACME directory URL"

    def __call__(self, value, ctx):
        if value in ACME_DIRECTORIES:
            return ACME_DIRECTORIES[value]
        if isinstance(value, str) and value.lower().startswith("http://"):
            raise _Invalid(f"ACME server must be https, got {_show(value)}")
        return super().__call__(value, ctx)


class Cidr(Kind):
    """An IP network; a bare IP means /32 (IPv4) or /128 (IPv6). Normalized string."""

    expected = "an IP network like '10.0.0.0/8' or '2001:db8::/32' (or a bare IP address)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii():
            self.fail(value)
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            self.fail(value)


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


class Enum(Kind):
    def __init__(self, *values: str):
        self.values = values
        self.expected = "one of " + ", ".join(repr(v) for v in values)

    def __call__(self, value, ctx):
        if isinstance(value, str) and value in self.values:
            return value
        hint = ""
        if isinstance(value, bool):
            hint = " (YAML reads unquoted yes/no/on/off as a boolean: quote the value)"
        self.fail(value, hint)


class WorkerProcesses(Kind):
    expected = "'auto' or an integer between 1 and 1024"

    def __call__(self, value, ctx):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024):
            return value
        self.fail(value)


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}", re.ASCII)


class EnvName(Kind):
    expected = "an environment variable name matching ^[A-Z_][A-Z0-9_]*$"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            self.fail(value)
        return value


def _read_env_secret(ctx: _Context, name: str, named_by: str) -> Secret:
    value = ctx.environ.get(name)
    if value is None:
        raise _Invalid(f"environment variable {name} is not set (named by {named_by})")
    if value == "":
        raise _Invalid(f"environment variable {name} is empty (named by {named_by})")
    if _forbidden_char(value):
        raise _Invalid(f"environment variable {name} (named by {named_by}) holds a control character "
                       f"({_forbidden_char(value)}); a secret is one line of text")
    return Secret(value, f"env:{name}")


# Variables a server's environment may not set: they change how the loader,
# the interpreter or the shell behave (LD_PRELOAD, NODE_OPTIONS --require ...),
# or belong to the bundle and systemd. The gateway sets PATH, HOME and LANG.
RESERVED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "IFS", "ENV", "BASH_ENV", "CDPATH", "LANG",
    "NODE_OPTIONS", "NODE_PATH", "NODE_REPL_EXTERNAL_MODULE", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
    "PYTHONINSPECT", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
    "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF", "LOCALDOMAIN", "TMPDIR", "NOTIFY_SOCKET", "LISTEN_FDS",
    "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY",
    "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "SYSTEMD_EXEC_PID", "MAINPID",
})
RESERVED_ENV_PREFIXES = ("LD_", "DYLD_", "MCP_EDGE_", "SYSTEMD_", "MALLOC_", "GLIBC_", "LC_")


def _reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


class EnvMap(Kind):
    """Environment for a process: ``NAME: value``; a value ``env:OTHER`` is read
    from this machine's environment at load time and becomes a :class:`Secret`.
    Names that change how the process is loaded or run are refused."""

    expected = "a mapping of NAME: value (environment variables)"

    def __init__(self, key: str):
        self.key = key  # the dotted key, to name it in "named by ..."

    def __call__(self, value, ctx):
        if not isinstance(value, dict):
            self.fail(value)
        if len(value) > 256:
            raise _Invalid(f"expected at most 256 variables, got {len(value)}")
        out = {}
        for name, val in value.items():
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise _Invalid(
                    f"invalid environment variable name {_show(name)} (expected ^[A-Z_][A-Z0-9_]*$, e.g. API_TOKEN)",
                    at=f".{name}",
                )
            if _reserved_env(name):
                raise _Invalid(
                    f"{name} may not be set here: it changes how the process is loaded or run, or belongs to "
                    "the bundle (reserved: PATH, HOME, LANG, LD_*, NODE_OPTIONS, PYTHONPATH, MCP_EDGE_*, ...)",
                    at=f".{name}",
                )
            if not isinstance(val, str):
                raise _Invalid(f"expected a string value (quote numbers and booleans), got {_show(val)}", at=f".{name}")
            if len(val) > 32768:
                raise _Invalid(f"expected at most 32768 characters, got {len(val)}", at=f".{name}")
            if val.startswith("env:"):
                ref = val[4:]
                if not _ENV_NAME.fullmatch(ref):
                    raise _Invalid(
                        f"expected 'env:NAME' with NAME matching ^[A-Z_][A-Z0-9_]*$, got {_show(val)}", at=f".{name}"
                    )
                try:
                    val = _read_env_secret(ctx, ref, f"{self.key}.{name}")
                except _Invalid as e:
                    raise _Invalid(e.message, at=f".{name}") from None
            out[name] = val
        return out


class SecretRef(Kind):
    """``env:NAME``: a secret read from this machine's environment at load time
    (never written in the settings file). ``pattern`` checks the value's shape."""

    def __init__(self, key: str, pattern: str = r"[A-Za-z0-9_-]{32,512}",
                 shape: str = "32 to 512 characters of A-Z, a-z, 0-9, '_' and '-'"):
        self.key, self.pattern, self.shape = key, re.compile(pattern, re.ASCII), shape
        self.expected = "'env:NAME' (the secret is read from environment variable NAME)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.startswith("env:") or not _ENV_NAME.fullmatch(value[4:]):
            self.fail(value)
        secret = _read_env_secret(ctx, value[4:], self.key)
        if not self.pattern.fullmatch(secret.reveal()):
            raise _Invalid(f"the value of environment variable {value[4:]} must be {self.shape}")
        return secret


_ORIGIN = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?/?", re.ASCII)


class Origin(Kind):
    """A browser origin: ``https://host[:port]``, lowercased, no path (it lands in an nginx map)."""

    expected = "an origin like 'https://claude.ai' (scheme and host, optional port, no path)"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        m = _ORIGIN.fullmatch(value.strip().lower())
        if not m:
            self.fail(value)
        scheme, host, port = m.groups()
        bare = host.strip("[]")
        if host.startswith("["):
            if not _ip(bare) or ":" not in bare:
                self.fail(value)
        elif not (_ip(host) or _is_dns_name(host, 1)):
            self.fail(value)
        if port is not None and not 1 <= int(port) <= 65535:
            self.fail(value)
        return f"{scheme}://{host}" + (f":{int(port)}" if port else "")


class ListOf(Kind):
    def __init__(self, item: Kind, max_items: int = 1024):
        self.item = item
        self.max_items = max_items
        self.expected = f"a list, each entry {item.expected}"

    def __call__(self, value, ctx):
        if not isinstance(value, list):
            self.fail(value)
        if len(value) > self.max_items:
            raise _Invalid(f"expected at most {self.max_items} entries, got {len(value)}")
        out = []
        for i, entry in enumerate(value):
            try:
                out.append(self.item(entry, ctx))
            except _Invalid as e:
                raise _Invalid(e.message, at=f"[{i}]{e.at}") from None
        return out


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


_IMAGE = re.compile(
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?",
    re.ASCII)


class ImageRef(Kind):
    expected = "a Docker image reference like 'python:3.11-slim' or 'registry.example.com/app:1.2'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or len(value) > 255 or not _IMAGE.fullmatch(value):
            self.fail(value)
        return value


class UserName(Str):
    def __init__(self):
        super().__init__(r"[a-z_][a-z0-9_-]{0,31}", "a user name (lowercase letters, digits, '_', '-'; 32 at most)")


_ARG_SHELL = re.compile(r"[|&;<>()$`\\\"'*?\[\]#{}]")


class Command(Kind):
    """The argv of a program the bundle starts (never through a shell): a list
    of strings, or one string split on spaces. A string with shell syntax is
    refused: no shell would interpret it, so it could only mislead."""

    expected = "a command: a list of arguments like [node, /opt/server.js], or a string of plain words"

    def __call__(self, value, ctx):
        if isinstance(value, str):
            if _ARG_SHELL.search(value):
                raise _Invalid(f"{_show(value)} has shell syntax, but no shell runs the command: give a list of "
                               "arguments (or, if a shell is really meant, [sh, -c, '...'])")
            value = value.split()
        if not isinstance(value, list) or not value or len(value) > 256:
            self.fail(value)
        for i, arg in enumerate(value):
            if not isinstance(arg, str) or len(arg) > 4096:
                raise _Invalid(f"expected a string argument, got {_show(arg)}", at=f"[{i}]")
        program = value[0]
        if not (re.fullmatch(r"[A-Za-z0-9._+-]+", program, re.ASCII) or program.startswith("/")):
            raise _Invalid(f"the program must be a name on PATH or an absolute path, got {_show(program)}", at="[0]")
        if program.startswith("/"):
            try:
                AbsPath()(program, ctx)
            except _Invalid as e:
                raise _Invalid(e.message, at="[0]") from None
        return list(value)


class Nullable(Kind):
    """``null`` or the wrapped kind."""

    def __init__(self, inner: Kind):
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def __call__(self, value, ctx):
        return None if value is None else self.inner(value, ctx)


class GroupName(Kind):
    """A host group: one with a registered section schema (checked at load time)."""

    expected = "a host group"

    def __call__(self, value, ctx):
        if isinstance(value, str) and value in GROUP_SCHEMAS:
            return value
        known = ", ".join(known_groups())
        if isinstance(value, str) and value in RESERVED_GROUPS:
            raise _Invalid(f"the {value} group is not supported yet (no '{value}' settings section is registered)")
        raise _Invalid(f"unknown group {_show(value)} (known groups: {known})")


# --- The schema: every setting, its default and what it means -----------------------


@dataclass(frozen=True)
class Field:
    """One setting. ``default`` is written as in YAML (``"24h"``, ``"~/.ssh/x"``)
    and goes through ``kind`` like a given value; REQUIRED means it must be given."""

    kind: Kind
    default: Any = REQUIRED
    doc: str = ""


# A schema is a dict: key -> Field, or key -> nested schema dict (a subsection).
Schema = dict

SSH_SCHEMA: Schema = {
    "user": Field(Str(r"[A-Za-z_][A-Za-z0-9._-]{0,31}", "a user name (letters, digits, '.', '_', '-')"), "deploy",
                  "login user; must be allowed to sudo"),
    "port": Field(Port(), 22, "SSH port"),
    "key_file": Field(
        Nullable(LocalPath(must_exist=True, missing_hint=" (null: use only the SSH agent's keys)")),
        "~/.ssh/id_ed25519",
        "private key file (must exist); null = only the SSH agent's keys",
    ),
    "known_hosts_file": Field(LocalPath(), "~/.ssh/known_hosts", "host keys are checked against this file"),
    "strict_host_key_checking": Field(
        Enum("yes", "accept-new", "no"), "yes", "yes | accept-new | no (as OpenSSH StrictHostKeyChecking)"
    ),
    "file_transfer": Field(Enum("sftp", "scp"), "sftp", "sftp | scp (DSM with SFTP off: scp)"),
    "sudo_password_env": Field(
        Nullable(EnvName()), None, "environment variable holding the sudo password (must be set and non-empty)"
    ),
    "sudo_password_file": Field(
        Nullable(LocalPath(private=True)), None,
        "or: a file outside the repo holding the sudo password (mode 0600: others may not read it)",
    ),
}

HOST_SCHEMA: Schema = {
    "name": Field(
        Str(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "a host name of letters, digits, '.', '_' and '-' (64 at most)"),
        REQUIRED,
        "unique name used by pyinfra (--limit NAME)",
    ),
    "group": Field(GroupName(), REQUIRED, "ubuntu | synology | control"),
    "address": Field(Address(), REQUIRED, "IP or DNS name to SSH to"),
    "domain": Field(Nullable(Domain()), None, "public name of the MCP endpoint (required in groups ubuntu and synology)"),
    # any key of `ssh:` may be overridden per host
    **{key: Field(f.kind, INHERIT, f"per-host override of ssh.{key}") for key, f in SSH_SCHEMA.items()},
}

# The post-deploy verification (and the drift check's), the same for both groups.
VERIFY_FIELDS: Schema = {
    "enabled": Field(Bool(), True, "after every apply and in drift checks, check the host's public URL from this machine"),
    "cert_min_days": Field(Int(0, 3650), 14, "fail when the served certificate expires within this many days"),
    "ca_file": Field(
        Nullable(LocalPath(must_exist=True)), None, "local PEM file trusted for the endpoint (private CAs only)"
    ),
    "timeout": Field(Duration(1, 300), "10s", "time allowed for each connection and MCP step"),
}

# What the shared MCP templates need, on every target (Ubuntu and the NAS).
MCP_NGINX_FIELDS: Schema = {
    "stream_timeout": Field(Duration(1, 7 * 86400), "24h", "read/send timeout of MCP streams (at most 7d)"),
    "client_max_body_size": Field(Size(1 << 10, 1 << 30), "4m", "largest request body (1k .. 1g)"),
    "rate_limit": {
        "per_ip": Field(Rate(), "20r/s", "MCP POSTs per client IP"),
        "per_ip_burst": Field(Int(0, 100000), 40, "burst allowed above per_ip"),
        "per_session": Field(Rate(), "10r/s", "MCP POSTs per MCP session (Mcp-Session-Id / sessionId)"),
        "per_session_burst": Field(Int(0, 100000), 20, "burst allowed above per_session"),
        "streams_per_ip": Field(Int(1, 100000), 50, "concurrent connections per client IP (limit_conn)"),
    },
    "metrics_allow": Field(
        ListOf(Cidr()), ["127.0.0.1/32", "::1/128"], "CIDRs allowed to read /metrics (nginx stub status)"
    ),
    "hsts_max_age": Field(Int(0, 63072000), 31536000, "seconds (at most 2 years); 0 disables HSTS"),
    # Optional gates on the MCP endpoints (all off by default: ChatGPT and Claude
    # connectors use OAuth or no authentication, and cannot send a bearer token).
    "access": {
        "bearer_tokens": Field(ListOf(SecretRef("access.bearer_tokens"), 64), [],
                               "tokens (each 'env:NAME') a client must send as 'Authorization: Bearer'; [] = no token gate"),
        "allow": Field(ListOf(Cidr()), [], "CIDRs allowed to use the MCP endpoints (403 otherwise); [] = everyone"),
        "allowed_origins": Field(Nullable(ListOf(Origin(), 256)), None,
                                 "browser origins allowed on the MCP endpoints (403 otherwise); null = no Origin check"),
    },
}

UBUNTU_SCHEMA: Schema = {
    # mcp-edge-gateway: one child process per MCP session (nothing shared between
    # users), sessions capped per client and in total, memory bounded by the unit.
    "gateway": {
        "command": Field(
            Command(), ["npx", "-y", "@modelcontextprotocol/server-everything"],
            "the stdio MCP server, started once per session (a list of arguments; no shell)",
        ),
        "environment": Field(
            EnvMap("ubuntu.gateway.environment"),
            {},
            "extra env for the stdio server: NAME: value; `env:NAME` is read from this machine's environment",
        ),
        "working_directory": Field(AbsPath(dedicated=True), "/var/lib/mcp-edge/gateway",
                                   "the server's only writable path (its own directory, not a system one)"),
        "sessions": {
            "max_total": Field(Int(1, 4096), 16, "sessions (child processes) at once; ~50 MB each for a Node server"),
            "max_per_client": Field(Int(1, 4096), 4,
                                    "sessions one client (address) may hold; a new one evicts its least recently used"),
            "idle_timeout": Field(Duration(60, 7 * 86400), "30m", "an idle session is ended after this"),
            "evict_min_idle": Field(Duration(0, 86400), "1m",
                                    "at max_total, a session idle this long may be evicted for a new client"),
        },
        "memory_max": Field(Size(64 << 20, 1 << 40), "1g", "MemoryMax of the gateway unit (its sessions included)"),
        "tasks_max": Field(Int(16, 65536), 512, "TasksMax of the gateway unit (processes and threads)"),
        "keepalive_interval": Field(Duration(5, 300), "25s",
                                    "SSE keep-alive comment interval on open streams (Claude Code aborts after 60 s)"),
        "log_level": Field(Enum("debug", "info", "warning"), "info", "debug | info | warning"),
    },
    "node": {
        "source": Field(Enum("distro", "nodesource"), "distro",
                        "where Node.js (for npm MCP servers) comes from: distro | nodesource"),
        "nodesource_major": Field(Int(18, 40), 20, "NodeSource major, used only with source: nodesource"),
    },
    "nginx": {
        "worker_processes": Field(WorkerProcesses(), "auto", "auto or a number"),
        "worker_rlimit_nofile": Field(Int(1024, 1048576), 65535,
                                      "open files limit of a worker (at least 2 x worker_connections)"),
        "worker_connections": Field(Int(16, 524288), 16384, "connections per worker"),
        **MCP_NGINX_FIELDS,
    },
    "acme": {
        "email": Field(Email(), REQUIRED, "registration and expiry mail"),
        "server": Field(
            AcmeServer(), "letsencrypt", "letsencrypt | letsencrypt-staging | an https ACME directory URL"
        ),
        "ca_bundle_file": Field(
            Nullable(LocalPath(must_exist=True)), None, "local PEM file trusted for the ACME server (private CAs only)"
        ),
        "webroot": Field(AbsPath(dedicated=True), "/var/www/mcp-edge-acme",
                         "HTTP-01 challenge files are served from here (a directory of its own)"),
    },
    "verify": dict(VERIFY_FIELDS),
    "preflight": {
        "min_free_disk": Field(Size(0, 1 << 50), "1g", "free space each of disk_paths needs before the host is changed"),
        "disk_paths": Field(ListOf(AbsPath(), 16), ["/", "/var"], "file systems checked for min_free_disk"),
    },
}

# A cross-field check gets (normalized section, report) and calls
# report(dotted_key, message) per problem. Values that failed their own check
# are _INVALID; checks skip those.
Check = Callable[[dict, Callable[[str, str], None]], None]

GROUP_SCHEMAS: dict[str, Schema] = {"ubuntu": UBUNTU_SCHEMA}
RESERVED_GROUPS: tuple[str, ...] = ()  # valid group names still waiting for a schema
OTHER_SECTIONS: dict[str, Schema] = {}  # top-level sections that are not host groups (e.g. control)
SECTION_CHECKS: dict[str, list[Check]] = {}


def known_groups() -> list[str]:
    return list(GROUP_SCHEMAS) + [g for g in RESERVED_GROUPS if g not in GROUP_SCHEMAS]


def register_section(name: str, schema: Schema, *, group: bool, checks: tuple[Check, ...] = ()) -> None:
    """Add a top-level section; ``group=True`` also makes ``group: <name>`` hosts valid."""
    (GROUP_SCHEMAS if group else OTHER_SECTIONS)[name] = schema
    SECTION_CHECKS[name] = list(checks)
    DEFAULTS[name] = _defaults(schema)


def _defaults(schema: Schema) -> dict:
    return {
        key: _defaults(spec) if isinstance(spec, dict) else copy.deepcopy(spec.default)
        for key, spec in schema.items()
    }


def iter_fields(schema: Schema | None = None, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every setting as (dotted key, Field); without arguments: all sections."""
    if schema is None:
        sections = {"ssh": SSH_SCHEMA, "hosts[]": HOST_SCHEMA, **GROUP_SCHEMAS, **OTHER_SECTIONS}
        for name, sub in sections.items():
            yield from iter_fields(sub, name)
        return
    for key, spec in schema.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            yield from iter_fields(spec, dotted)
        else:
            yield dotted, spec


# --- Cross-field checks -------------------------------------------------------------


def _valid(*values: Any) -> bool:
    return all(v is not _INVALID for v in values)


def _check_ubuntu(section: dict, report: Callable[[str, str], None]) -> None:
    gw, nginx = section["gateway"], section["nginx"]
    if _valid(gw) and _valid(gw["sessions"]):
        s = gw["sessions"]
        if _valid(s["max_total"], s["max_per_client"]) and s["max_per_client"] > s["max_total"]:
            report("ubuntu.gateway.sessions.max_per_client",
                   f"{s['max_per_client']} is more than ubuntu.gateway.sessions.max_total ({s['max_total']})")
    if _valid(nginx) and _valid(nginx["worker_rlimit_nofile"], nginx["worker_connections"]):
        if nginx["worker_rlimit_nofile"] < 2 * nginx["worker_connections"]:
            report("ubuntu.nginx.worker_rlimit_nofile",
                   f"{nginx['worker_rlimit_nofile']} is below 2 x ubuntu.nginx.worker_connections "
                   f"({2 * nginx['worker_connections']}): every proxied stream holds two connections")
    if _valid(gw, nginx) and _valid(gw["keepalive_interval"], nginx["stream_timeout"]):
        if gw["keepalive_interval"] >= nginx["stream_timeout"]:
            report("ubuntu.gateway.keepalive_interval",
                   f"{gw['keepalive_interval']}s is not below ubuntu.nginx.stream_timeout "
                   f"({nginx['stream_timeout']}s): idle streams would be cut between two keep-alives")


SECTION_CHECKS["ubuntu"] = [_check_ubuntu]

# DSM's own web ports (DSM, its HTTPS, nginx): a container may not take them.
DSM_PORTS = {80: "DSM's nginx", 443: "DSM's nginx", 5000: "DSM's web UI", 5001: "DSM's web UI (HTTPS)"}
VOLUMES = ("/volume1", "/volume2", "/volume3", "/volume4", "/volume5", "/volume6", "/volume7", "/volume8",
           "/volume9")


class DockerCli(AbsPath):
    expected = "'auto' or an absolute path"

    def __init__(self):
        super().__init__(expected=self.expected)

    def __call__(self, value, ctx):
        return value if value == "auto" else super().__call__(value, ctx)


def _container_schema(name: str, context: str, dockerfile: str, host_port: int, container_port: int,
                      volumes: list[str], environment: dict) -> Schema:
    return {
        "name": Field(Str(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", "a container name"), name, "container name"),
        "build_context": Field(AbsPath(under=VOLUMES), context, "source directory on a NAS volume, built with docker build"),
        "dockerfile": Field(Str(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "a file name inside build_context"), dockerfile,
                            "Dockerfile inside build_context"),
        "base_image": Field(ImageRef(), "python:3.11-slim", "passed as build arg BASE_IMAGE"),
        "host_port": Field(Port(), host_port, "port published on the NAS (publish_address)"),
        "container_port": Field(Port(), container_port, "port the app listens on inside the container"),
        "volumes": Field(ListOf(Volume(), 64), volumes, "bind mounts /volumeN/path:/container/path[:ro|rw]"),
        "environment": Field(EnvMap(f"synology.{name.replace('-', '_')}.environment"), environment,
                             "container environment; `env:NAME` is read from this machine's environment"),
        "restart": Field(Enum("no", "always", "unless-stopped", "on-failure"), "unless-stopped", "restart policy"),
        "health_path": Field(Str(r"/[A-Za-z0-9._~/-]{0,255}", "an absolute URL path"), "/health",
                             "HTTP path that answers 200 when healthy"),
        "health_timeout": Field(Duration(5, 1800), "90s", "how long a new container may take to become healthy"),
    }


SYNOLOGY_SCHEMA: Schema = {
    "docker": Field(DockerCli(), "auto",
                    "docker CLI: auto (probe DSM 7.2, 7.1, /usr/local/bin paths) or an absolute path"),
    "bundle_dir": Field(AbsPath(dedicated=True, under=VOLUMES), "/volume1/mcp-edge",
                        "on a data volume (survives DSM updates): guard script, managed copies, env files, backups"),
    "certificate_conf": Field(AbsPath(), "/usr/syno/etc/www/certificate/system_default/cert.conf",
                              "DSM's cert.conf (ssl_certificate lines) for the MCP hostname"),
    "publish_address": Field(IpAddress(), "127.0.0.1", "NAS address the container ports are published on"),
    "publish_all_interfaces": Field(Bool(), False,
                                    "allow publish_address 0.0.0.0 / :: (containers reachable around DSM's nginx)"),
    "upstream_host": Field(Address(), "127.0.0.1", "where DSM's nginx reaches the published ports"),
    "patch_entries": Field(ListOf(Domain(), 64), [],
                           "hostnames of DSM reverse-proxy entries to patch in place for streaming (patch mode)"),
    "guard_interval": Field(Choice((60, 300, 600, 900, 1200, 1800), "DSM's Task Scheduler repeats only at these"),
                            "5m", "how often the on-NAS guard re-checks the managed files"),
    "preflight": {
        "min_free_disk": Field(Size(0, 1 << 50), "1g", "free space the volume of bundle_dir needs before the NAS is changed"),
    },
    "nginx": dict(MCP_NGINX_FIELDS),
    "verify": dict(VERIFY_FIELDS),
    "loop_api": _container_schema(
        "loop-api", "/volume1/docker/loop-api", "Dockerfile", 8082, 8081,
        ["/volume1/LOOP_CORE/vault/LOOP:/vault:rw", "/volume1/LOOP_CLevel/vault/loop_exec:/vault/exec:ro"],
        {"VAULT_DIR": "/vault", "EXEC_VAULT_DIR": "/vault/exec", "OAUTH_DB_PATH": "/vault/.oauth/oauth.db",
         "TZ": "Asia/Seoul"}),
    "loop_mcp": _container_schema(
        "loop-mcp", "/volume1/docker/loop-mcp", "Dockerfile.mcp", 8085, 8085,
        ["/volume1/LOOP_CORE/vault/LOOP:/vault:ro"],
        {"VAULT_DIR": "/vault", "OAUTH_DB_PATH": "/vault/.oauth/oauth.db", "TZ": "Asia/Seoul"}),
}


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _check_synology(section: dict, report: Callable[[str, str], None]) -> None:
    api, mcp = section["loop_api"], section["loop_mcp"]
    if _valid(section["publish_address"], section["publish_all_interfaces"]) \
            and section["publish_address"] in ("0.0.0.0", "::") and not section["publish_all_interfaces"]:
        report("synology.publish_address",
               f"{section['publish_address']} publishes the containers on every interface, around DSM's nginx and "
               "its gates; use 127.0.0.1, or set synology.publish_all_interfaces: true if that is really meant")
    if not _valid(api, mcp):
        return
    if _valid(api["host_port"], mcp["host_port"]) and api["host_port"] == mcp["host_port"]:
        report("synology.loop_mcp.host_port",
               f"port {mcp['host_port']} is also synology.loop_api.host_port: two services on one port")
    bundle = section["bundle_dir"]
    for name, c in (("loop_api", api), ("loop_mcp", mcp)):
        if _valid(c["host_port"]) and c["host_port"] in DSM_PORTS:
            report(f"synology.{name}.host_port", f"port {c['host_port']} is {DSM_PORTS[c['host_port']]}")
        if not _valid(bundle):
            continue
        if _valid(c["build_context"]) and (_inside(c["build_context"], bundle) or _inside(bundle, c["build_context"])):
            report(f"synology.{name}.build_context",
                   f"{c['build_context']} overlaps synology.bundle_dir ({bundle}), which holds the env files")
        for i, volume in enumerate(c["volumes"] if _valid(c["volumes"]) else []):
            source = volume.split(":")[0]
            if _inside(source, bundle) or _inside(bundle, source):
                report(f"synology.{name}.volumes[{i}]",
                       f"bind mount source {source} overlaps synology.bundle_dir ({bundle}), which holds the "
                       "secrets (env files) of every service")
    if _valid(api["name"], mcp["name"]) and api["name"] == mcp["name"]:
        report("synology.loop_mcp.name", f"container name {mcp['name']!r} is also synology.loop_api.name")


GROUP_SCHEMAS["synology"] = SYNOLOGY_SCHEMA
SECTION_CHECKS["synology"] = [_check_synology]

DEFAULTS: dict[str, Any] = {
    "ssh": _defaults(SSH_SCHEMA),
    **{name: _defaults(schema) for name, schema in GROUP_SCHEMAS.items()},
}


# --- The result --------------------------------------------------------------------------


@dataclass
class HostSettings:
    name: str
    group: str
    address: str
    domain: str | None
    ssh: dict  # normalized ssh keys after per-host overrides (sudo_* name the source, not the secret)
    sudo_password: Secret | None = None  # None: passwordless sudo

    def hostdata(self) -> dict:
        """Host data for a pyinfra inventory."""
        data = {
            "ssh_hostname": self.address,
            "ssh_port": self.ssh["port"],
            "ssh_user": self.ssh["user"],
            "ssh_known_hosts_file": self.ssh["known_hosts_file"],
            "ssh_strict_host_key_checking": self.ssh["strict_host_key_checking"],
            "ssh_file_transfer_protocol": self.ssh["file_transfer"],
            "mcp_edge_host": {"name": self.name, "group": self.group, "domain": self.domain},
        }
        if self.ssh["key_file"]:
            data["ssh_key"] = self.ssh["key_file"]
        if self.sudo_password is not None:
            # A Secret, not a str: pyinfra's debug-inventory and JSON output show
            # "<secret>"; mcpedge.sudo_askpass reveals it into a 0700 askpass file.
            data["_sudo_password"] = self.sudo_password
        return data


class Settings:
    def __init__(self, path: str, raw: dict, sections: dict[str, dict], hosts: list[HostSettings]):
        self.path = path
        self.raw = raw
        self.sections = sections  # normalized: "ssh" and every registered section
        self.hosts = hosts

    def __repr__(self) -> str:
        return f"Settings({self.path!r}, hosts={[h.name for h in self.hosts]})"

    def group(self, name: str) -> dict:
        """The normalized section of a host group, defaults filled in (a copy)."""
        if name not in GROUP_SCHEMAS:
            raise KeyError(f"no settings section for group {name!r} (groups with one: {', '.join(GROUP_SCHEMAS)})")
        return copy.deepcopy(self.sections[name])

    def section(self, name: str) -> dict:
        """Any normalized top-level section (``ssh``, a group, ``control`` ...), a copy."""
        return copy.deepcopy(self.sections[name])

    def host(self, name: str) -> HostSettings:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host named {name!r} in {self.path}")

    def inventory(self) -> dict[str, list]:
        """``{group: [(name, hostdata), ...]}`` for every known group (possibly empty)."""
        groups: dict[str, list] = {g: [] for g in known_groups()}
        for host in self.hosts:
            groups[host.group].append((host.name, host.hostdata()))
        return groups


# --- Loading ----------------------------------------------------------------------------------

MAX_FILE_BYTES = 1 << 20  # a settings file is a few kilobytes; anything this big is a mistake
MAX_DEPTH = 32  # the schema is 5 levels deep
MAX_NODES = 100_000  # after expanding aliases (a "billion laughs" file stays small on disk)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping, and reads
    numbers only in plain decimal (no YAML 1.1 octal, sexagesimal or hex)."""


def _construct_mapping(loader: _YamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {_show(key)} (first given on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        except TypeError:  # unhashable key: construct_mapping reports it
            pass
    return loader.construct_mapping(node, deep)


_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)", re.ASCII)


def _construct_int(loader: _YamlLoader, node: yaml.ScalarNode):
    text = loader.construct_scalar(node)
    if not _PLAIN_INT.fullmatch(text):
        try:
            read_as = yaml.SafeLoader.construct_yaml_int(loader, node)
            how = f"YAML 1.1 reads it as {read_as}"
        except ValueError:
            how = "YAML 1.1 reads it as a number in another base"
        return YamlScalar(text, f"ambiguous number {text} ({how}): write it in plain decimal, or quote it "
                                f"if it is text")
    if len(text.lstrip("+-")) > 18:
        return YamlScalar(text, f"number of {len(text.lstrip('+-'))} digits is too long")
    return int(text)


def _construct_float(loader: _YamlLoader, node: yaml.ScalarNode):
    text = loader.construct_scalar(node)
    if ":" in text or len(text) > 40:  # 1:30.5 is sexagesimal in YAML 1.1
        return YamlScalar(text, f"ambiguous number {text} (YAML 1.1 reads it in base 60): quote it if it is text")
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_YamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_YamlLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _node_size(node, memo: dict, depth: int = 0) -> int:
    """Nodes after alias expansion (memoized, so shared nodes cost once to count)."""
    if depth > MAX_DEPTH:
        raise SettingsError(f"nested more than {MAX_DEPTH} levels deep")
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_node_size(k, memo, depth + 1) + _node_size(v, memo, depth + 1) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_node_size(v, memo, depth + 1) for v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    if size > MAX_NODES:
        raise SettingsError(f"more than {MAX_NODES} values (after expanding YAML aliases)")
    return size


class _Validator:
    def __init__(self, display: str, ctx: _Context):
        self.display = display
        self.ctx = ctx
        self.problems: list[str] = []

    def report(self, key: str, message: str) -> None:
        self.problems.append(f"{self.display}: {key}: {message}" if key else f"{self.display}: {message}")

    def _screen(self, value: Any, key: str) -> bool:
        """Problems no kind should have to think about: control characters, and
        numbers the loader refused to guess. True when the value may go on."""
        if isinstance(value, YamlScalar):
            self.report(key, value.problem)
            return False
        if isinstance(value, str):
            bad = _forbidden_char(value)
            if bad:
                self.report(key, f"contains a control or invisible character ({bad}); values are one line of "
                                 "plain text")
                return False
        elif isinstance(value, dict):
            ok = True
            for k, v in value.items():
                ok = self._screen(k, f"{key}.{_show(k) if not isinstance(k, str) else k}") and ok
                ok = self._screen(v, f"{key}.{k}") and ok
            return ok
        elif isinstance(value, list):
            return all([self._screen(v, f"{key}[{i}]") for i, v in enumerate(value)])
        return True

    def value(self, kind: Kind, value: Any, key: str, default: bool = False) -> Any:
        if not self._screen(value, key):
            return _INVALID
        try:
            return kind(value, self.ctx)
        except _Invalid as e:
            suffix = f" (the default value of {key})" if default else ""
            self.report(key + e.at, e.message + suffix)
            return _INVALID

    def section(self, schema: Schema, data: Any, key: str, lenient: bool = False) -> Any:
        """Check a mapping against a schema; fill defaults. ``lenient``: missing
        required keys become None (an absent section nobody uses)."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.report(key, f"expected a mapping, got {_show(data)}")
            return _INVALID
        for name in data:
            if name not in schema:
                self.report(f"{key}.{_show(name) if not isinstance(name, str) else name}",
                            _unknown(name, schema, "key"))
        out = {}
        for name, spec in schema.items():
            sub = f"{key}.{name}"
            if isinstance(spec, dict):
                out[name] = self.section(spec, data.get(name), sub, lenient)
            elif name in data:
                out[name] = self.value(spec.kind, data[name], sub)
            elif spec.default is REQUIRED:
                if not lenient:
                    self.report(sub, f"missing required key ({spec.doc})")
                out[name] = None if lenient else _INVALID
            elif spec.default is INHERIT:
                out[name] = INHERIT
            else:
                out[name] = self.value(spec.kind, copy.deepcopy(spec.default), sub, default=True)
        return out


def _unknown(name: Any, known: Any, what: str) -> str:
    names = [str(k) for k in known]
    message = f"unknown {what} (known: {', '.join(names)})"
    close = difflib.get_close_matches(str(name)[:100], names, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _read(display: str) -> Any:
    try:
        with open(display, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SettingsError(f"{display}: file not found (start from settings.example.yaml)") from None
    except IsADirectoryError:
        raise SettingsError(f"{display}: is a directory, not a settings file") from None
    except OSError as e:
        raise SettingsError(f"{display}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SettingsError(f"{display}: larger than {MAX_FILE_BYTES >> 10} KiB; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{display}: not UTF-8 text") from None
    try:
        loader = _YamlLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _node_size(node, {})
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except SettingsError as e:
        raise SettingsError(f"{display}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SettingsError(f"{display}: {where}invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:  # ReaderError (a control character), ...
        raise SettingsError(f"{display}: invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    except RecursionError:
        raise SettingsError(f"{display}: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, TypeError, OverflowError) as e:  # a constructor's own failure (a bad timestamp ...)
        raise SettingsError(f"{display}: invalid YAML value: {str(e)[:200]}") from None


def load(path: str | os.PathLike) -> Settings:
    """Read and validate a settings file; raise SettingsError listing every problem."""
    display = os.fspath(path)
    if not display:
        raise SettingsError("the settings file name is empty (is MCP_EDGE_SETTINGS set to ''?)")
    raw = _read(display)
    sections_known = ["ssh", "hosts", *GROUP_SCHEMAS, *OTHER_SECTIONS]
    if raw is None:
        raise SettingsError(f"{display}: the file is empty; expected a mapping of sections ({', '.join(sections_known)})")
    if not isinstance(raw, dict):
        raise SettingsError(
            f"{display}: expected a mapping of sections ({', '.join(sections_known)}) at the top level, got {_show(raw)}"
        )

    v = _Validator(display, _Context(os.path.dirname(os.path.abspath(display)), dict(os.environ)))
    for name in raw:
        if name in sections_known:
            continue
        shown = name if isinstance(name, str) else _show(name)
        if name in RESERVED_GROUPS:
            v.report(shown, f"the {name} group is not supported yet (no '{name}' settings section is registered)")
        else:
            v.report(shown, _unknown(name, sections_known, "top-level section"))

    ssh = v.section(SSH_SCHEMA, raw.get("ssh"), "ssh")
    hosts_raw = raw.get("hosts")
    if "hosts" not in raw:
        v.report("hosts", "missing required section (a list of hosts: name, group, address, domain)")
        hosts_raw = []
    elif not isinstance(hosts_raw, list) or not hosts_raw:
        v.report("hosts", f"expected a non-empty list of hosts, got {_show(hosts_raw)}")
        hosts_raw = []
    elif len(hosts_raw) > 1000:
        v.report("hosts", f"expected at most 1000 hosts, got {len(hosts_raw)}")
        hosts_raw = []

    entries = [v.section(HOST_SCHEMA, entry, f"hosts[{i}]") for i, entry in enumerate(hosts_raw)]
    used_groups = {e["group"] for e in entries if e is not _INVALID}

    sections: dict[str, Any] = {"ssh": ssh}
    for name, schema in {**GROUP_SCHEMAS, **OTHER_SECTIONS}.items():
        lenient = name not in raw and name not in used_groups
        section = v.section(schema, raw.get(name), name, lenient=lenient)
        sections[name] = section
        if section is not _INVALID:
            for check in SECTION_CHECKS.get(name, []):
                check(section, v.report)

    hosts = _hosts(v, ssh, entries)

    if v.problems:
        raise SettingsError(v.problems)
    return Settings(display, raw, sections, hosts)


def _sudo_secret(v: _Validator, env: Any, file: Any, key: str, cache: dict) -> Any:
    """The sudo password named by a (sudo_password_env, sudo_password_file) pair given at ``key``."""
    if key in cache:
        return cache[key]
    result: Any = None
    if not _valid(env, file):
        result = _INVALID
    elif env is not None and file is not None:
        v.report(f"{key}.sudo_password_file", f"give either {key}.sudo_password_env or {key}.sudo_password_file, not both")
        result = _INVALID
    elif env is not None:
        try:
            result = _read_env_secret(v.ctx, env, f"{key}.sudo_password_env")
        except _Invalid as e:
            v.report(f"{key}.sudo_password_env", e.message)
            result = _INVALID
    elif file is not None:
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read(4097).rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            v.report(f"{key}.sudo_password_file", f"cannot read {file!r}: {getattr(e, 'strerror', None) or e}")
            result = _INVALID
        else:
            if not text:
                v.report(f"{key}.sudo_password_file", f"file {file!r} is empty")
                result = _INVALID
            elif len(text) > 4096 or "\n" in text or _forbidden_char(text):
                v.report(f"{key}.sudo_password_file", f"file {file!r} must hold one line (the password) of plain text")
                result = _INVALID
            else:
                result = Secret(text, f"file:{file}")
    cache[key] = result
    return result


def _hosts(v: _Validator, ssh: Any, entries: list) -> list[HostSettings]:
    hosts: list[HostSettings] = []
    names: dict[str, str] = {}
    domains: dict[str, str] = {}
    endpoints: dict[tuple, str] = {}
    secrets: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        key = f"hosts[{i}]"
        if entry is _INVALID:
            continue
        name, group, domain = entry["name"], entry["group"], entry["domain"]
        if _valid(name):
            if name in names:
                v.report(f"{key}.name", f"duplicate host name {name!r} (also {names[name]})")
            else:
                names[name] = f"{key}.name"
        if group in ("ubuntu", "synology") and domain is None:
            v.report(f"{key}.domain", f"missing: hosts in group {group!r} need a domain (the public name of their MCP endpoint)")
        if _valid(domain) and domain is not None:
            if domain in domains:
                v.report(f"{key}.domain", f"duplicate domain {domain!r} (also {domains[domain]})")
            else:
                domains[domain] = f"{key}.domain"
        if ssh is _INVALID:
            continue
        merged = {k: (ssh[k] if entry[k] is INHERIT else entry[k]) for k in SSH_SCHEMA}
        # Two entries reaching one SSH endpoint are one machine deployed twice,
        # with two sets of settings fighting each other.
        if _valid(entry["address"], merged["port"]):
            endpoint = (entry["address"], merged["port"])
            if endpoint in endpoints:
                v.report(f"{key}.address", f"{entry['address']} port {merged['port']} is also {endpoints[endpoint]}: "
                                           "two hosts on one machine (give each host its own address or port)")
            else:
                endpoints[endpoint] = f"{key} ({name})"
        if entry["sudo_password_env"] is INHERIT and entry["sudo_password_file"] is INHERIT:
            secret = _sudo_secret(v, ssh["sudo_password_env"], ssh["sudo_password_file"], "ssh", secrets)
        else:  # a host naming either source replaces both of `ssh:`
            for k in ("sudo_password_env", "sudo_password_file"):
                merged[k] = None if entry[k] is INHERIT else entry[k]
            secret = _sudo_secret(v, merged["sudo_password_env"], merged["sudo_password_file"], key, secrets)
        if not _valid(name, group, entry["address"], domain, secret, *merged.values()):
            continue
        hosts.append(HostSettings(name, group, entry["address"], domain, merged, secret))
    return hosts


# --- The current settings of this process ----------------------------------------------------

_current: Settings | None = None


def use(path: str | os.PathLike) -> Settings:
    """Load ``path`` and remember it as the current settings of this process."""
    global _current
    _current = load(path)
    return _current


def current() -> Settings:
    """The settings given to use(); else load $MCP_EDGE_SETTINGS (default settings.yaml)."""
    if _current is None:
        path = os.environ.get(ENV_VAR)
        if path is not None and not path.strip():
            raise SettingsError(f"{ENV_VAR} is set but empty: unset it (to use {DEFAULT_PATH}) or name a file")
        return use(path or DEFAULT_PATH)
    return _current


def inventory_or_exit(path: str | os.PathLike | None = None) -> dict[str, list]:
    """The pyinfra inventory of the settings (``path``, else :func:`current`);
    on bad settings print each problem on one line and exit 1, before any host
    is contacted (pyinfra would print a traceback above the message)."""
    try:
        return (use(path) if path is not None else current()).inventory()
    except SettingsError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        raise SystemExit(1) from None

# The control: section (drift repair) registers itself; imported last, it sees
# everything above.
from . import control as _control  # noqa: E402,F401
