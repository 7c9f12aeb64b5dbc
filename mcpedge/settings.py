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

Sections are registered with :func:`register_section`; a ``synology`` section
(``group=True``) or a ``control`` section (``group=False``) is added the same
way as ``ubuntu`` below.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import yaml

__all__ = [
    "ACME_DIRECTORIES",
    "DEFAULTS",
    "GROUP_SCHEMAS",
    "HOST_SCHEMA",
    "RESERVED_GROUPS",
    "SSH_SCHEMA",
    "UBUNTU_SCHEMA",
    "Field",
    "HostSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "current",
    "iter_fields",
    "known_groups",
    "load",
    "min_node_major",
    "register_section",
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


class Secret(str):
    """A str whose repr is masked, so a secret never shows up in logs by accident.

    ``str(secret)``, f-strings and string operations still give the real value.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<secret>"


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


def _show(value: Any) -> str:
    """How a bad value is quoted in an error message (YAML-ish)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value)


# --- Kinds: how one value is checked and normalized ---------------------------------


class _Context:
    """What kinds may need: the settings file's directory and the environment."""

    def __init__(self, base_dir: str, environ: dict[str, str]):
        self.base_dir = base_dir
        self.environ = environ


class Kind:
    """Checks one value and returns it normalized; raises _Invalid otherwise."""

    expected = "a value"

    def __call__(self, value: Any, ctx: _Context) -> Any:  # pragma: no cover
        raise NotImplementedError

    def fail(self, value: Any, hint: str = "") -> None:
        raise _Invalid(f"expected {self.expected}, got {_show(value)}{hint}")


class Str(Kind):
    def __init__(self, pattern: str | None = None, expected: str = "a non-empty string"):
        self.pattern = re.compile(pattern) if pattern else None
        self.expected = expected

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.strip():
            self.fail(value)
        if self.pattern and not self.pattern.fullmatch(value):
            self.fail(value)
        return value


class Bool(Kind):
    expected = "true or false (an unquoted YAML boolean)"

    def __call__(self, value, ctx):
        if not isinstance(value, bool):
            self.fail(value)
        return value


class Int(Kind):
    def __init__(self, min: int | None = None, max: int | None = None, expected: str = ""):
        self.min, self.max = min, max
        if expected:
            self.expected = expected
        elif min is not None and max is not None:
            self.expected = f"an integer between {min} and {max}"
        elif min is not None:
            self.expected = f"an integer >= {min}"
        elif max is not None:
            self.expected = f"an integer <= {max}"
        else:
            self.expected = "an integer"

    def __call__(self, value, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            self.fail(value)
        return value


class Port(Int):
    def __init__(self):
        super().__init__(1, 65535, "a port number between 1 and 65535")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(Kind):
    """``30s``, ``5m``, ``24h``, ``7d`` or bare integer seconds -> int seconds."""

    def __init__(self, min: int = 0):
        self.min = min
        self.expected = "a duration like '30s', '5m', '24h' or '7d' (or whole seconds)"
        if min:
            self.expected += f" of at least {min}s"

    def __call__(self, value, ctx):
        if isinstance(value, bool):
            self.fail(value)
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str) and (m := re.fullmatch(r"(\d+)([smhd])", value.strip())):
            seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            self.fail(value)
        if seconds < self.min:
            self.fail(value)
        return seconds


class Rate(Kind):
    """An nginx ``limit_req_zone`` rate, kept as the string nginx expects."""

    expected = "a rate like '10r/s' or '600r/m'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not re.fullmatch(r"\d+r/[sm]", value) or int(value.split("r")[0]) < 1:
            self.fail(value)
        return value


class Size(Kind):
    """An nginx size (``512k``, ``4m``, ``1g`` or bytes), kept as a string."""

    expected = "a size like '512k', '4m' or '1g' (or whole bytes)"

    def __call__(self, value, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if not isinstance(value, str) or not re.fullmatch(r"\d+[kKmMgG]?", value):
            self.fail(value)
        return value.lower()


_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


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
        if not isinstance(value, str) or not _is_dns_name(value.lower(), 2):
            self.fail(value)
        return value.lower()


class Address(Kind):
    """What SSH connects to: an IP address or a DNS name (a single label is fine)."""

    expected = "an IP address or a DNS name"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if not _is_dns_name(value.lower(), 1):
            self.fail(value)
        return value


class Email(Kind):
    expected = "an email address like 'ops@example.com'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or value.count("@") != 1:
            self.fail(value)
        local, domain = value.split("@")
        if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+", local) or not _is_dns_name(domain.lower(), 2):
            self.fail(value)
        return f"{local}@{domain.lower()}"


class HttpsUrl(Kind):
    expected = "an https:// URL"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or any(c.isspace() for c in value):
            self.fail(value)
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
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
        if not isinstance(value, str):
            self.fail(value)
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            self.fail(value)


class AbsPath(Kind):
    """An absolute POSIX path on the target host, normalized."""

    expected = "an absolute path starting with '/'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "\0\n"):
            self.fail(value)
        return posixpath.normpath(value)


class LocalPath(Kind):
    """A path on the control machine: ``~`` expanded, relative to the settings file's directory."""

    def __init__(self, must_exist: bool = False, readable: bool = False, missing_hint: str = ""):
        self.must_exist = must_exist or readable
        self.missing_hint = missing_hint
        self.readable = readable
        self.expected = "a file path on this machine"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.strip() or "\0" in value:
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
    expected = "'auto' or an integer >= 1"

    def __call__(self, value, ctx):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        self.fail(value)


_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


class Semver(Kind):
    expected = "an exact version X.Y.Z like '4.0.0'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not _SEMVER.fullmatch(value):
            self.fail(value)
        return value


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


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
    return Secret(value)


class EnvMap(Kind):
    """Environment for a process: ``NAME: value``; a value ``env:OTHER`` is read
    from this machine's environment at load time and becomes a :class:`Secret`."""

    expected = "a mapping of NAME: value (environment variables)"

    def __init__(self, key: str):
        self.key = key  # the dotted key, to name it in "named by ..."

    def __call__(self, value, ctx):
        if not isinstance(value, dict):
            self.fail(value)
        out = {}
        for name, val in value.items():
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise _Invalid(
                    f"invalid environment variable name {_show(name)} (expected ^[A-Z_][A-Z0-9_]*$, e.g. API_TOKEN)",
                    at=f".{name}",
                )
            if not isinstance(val, str):
                raise _Invalid(f"expected a string value (quote numbers and booleans), got {_show(val)}", at=f".{name}")
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

    def __init__(self, key: str, pattern: str = r"[A-Za-z0-9_-]{32,}",
                 shape: str = "at least 32 characters of A-Z, a-z, 0-9, '_' and '-'"):
        self.key, self.pattern, self.shape = key, re.compile(pattern), shape
        self.expected = "'env:NAME' (the secret is read from environment variable NAME)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.startswith("env:") or not _ENV_NAME.fullmatch(value[4:]):
            self.fail(value)
        secret = _read_env_secret(ctx, value[4:], self.key)
        if not self.pattern.fullmatch(secret):
            raise _Invalid(f"the value of environment variable {value[4:]} must be {self.shape}")
        return secret


class Origin(Kind):
    """A browser origin: ``https://host[:port]``, lowercased, no path."""

    expected = "an origin like 'https://claude.ai' (scheme and host, no path)"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        parts = urlsplit(value.strip().lower())
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username:
            self.fail(value)
        return f"{parts.scheme}://{parts.netloc}"


def size_bytes(size: str) -> int:
    """An nginx-style size from the settings ('1g', '512m', '4096') in bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


class ListOf(Kind):
    def __init__(self, item: Kind):
        self.item = item
        self.expected = f"a list, each entry {item.expected}"

    def __call__(self, value, ctx):
        if not isinstance(value, list):
            self.fail(value)
        out = []
        for i, entry in enumerate(value):
            try:
                out.append(self.item(entry, ctx))
            except _Invalid as e:
                raise _Invalid(e.message, at=f"[{i}]{e.at}") from None
        return out


class Volume(Kind):
    """A Docker bind mount ``/host/path:/container/path[:ro|rw]`` (absolute paths)."""

    expected = "a bind mount '/host/path:/container/path' with an optional ':ro' or ':rw'"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        parts = value.split(":")
        if len(parts) == 2:
            parts.append("rw")
        if len(parts) != 3 or not all(p.startswith("/") for p in parts[:2]) or parts[2] not in ("ro", "rw"):
            self.fail(value)
        return ":".join(parts)


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
    "user": Field(Str(r"\S+", "a user name without spaces"), "deploy", "login user; must be allowed to sudo"),
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
        Nullable(LocalPath(readable=True)), None, "or: a readable file outside the repo holding the sudo password"
    ),
}

HOST_SCHEMA: Schema = {
    "name": Field(
        Str(r"[A-Za-z0-9][A-Za-z0-9._-]*", "a host name of letters, digits, '.', '_' and '-'"),
        REQUIRED,
        "unique name used by pyinfra (--limit NAME)",
    ),
    "group": Field(GroupName(), REQUIRED, "ubuntu | synology"),
    "address": Field(Address(), REQUIRED, "IP or DNS name to SSH to"),
    "domain": Field(Nullable(Domain()), None, "public name of the MCP endpoint (required in groups ubuntu and synology)"),
    # any key of `ssh:` may be overridden per host
    **{key: Field(f.kind, INHERIT, f"per-host override of ssh.{key}") for key, f in SSH_SCHEMA.items()},
}

# What the shared MCP templates need, on every target (Ubuntu and the NAS).
# The post-deploy verification (and the drift check's), the same for both groups.
VERIFY_FIELDS: Schema = {
    "enabled": Field(Bool(), True, "after every apply and in drift checks, check the host's public URL from this machine"),
    "cert_min_days": Field(Int(min=0), 14, "fail when the served certificate expires within this many days"),
    "ca_file": Field(
        Nullable(LocalPath(must_exist=True)), None, "local PEM file trusted for the endpoint (private CAs only)"
    ),
    "timeout": Field(Duration(min=1), "10s", "time allowed for each connection and MCP step"),
}

MCP_NGINX_FIELDS: Schema = {
    "stream_timeout": Field(Duration(min=1), "24h", "read/send timeout of MCP streams (seconds)"),
    "client_max_body_size": Field(Size(), "4m", "largest request body"),
    "rate_limit": {
        "per_ip": Field(Rate(), "20r/s", "MCP POSTs per client IP"),
        "per_ip_burst": Field(Int(min=0), 40, "burst allowed above per_ip"),
        "per_session": Field(Rate(), "10r/s", "MCP POSTs per MCP session (Mcp-Session-Id / sessionId)"),
        "per_session_burst": Field(Int(min=0), 20, "burst allowed above per_session"),
        "streams_per_ip": Field(Int(min=1), 50, "concurrent connections per client IP (limit_conn)"),
    },
    "metrics_allow": Field(
        ListOf(Cidr()), ["127.0.0.1/32", "::1/128"], "CIDRs allowed to read /metrics (nginx stub status)"
    ),
    "hsts_max_age": Field(Int(min=0), 31536000, "seconds; 0 disables HSTS"),
    # Optional gates on the MCP endpoints (all off by default: ChatGPT and Claude
    # connectors use OAuth or no authentication, and cannot send a bearer token).
    "access": {
        "bearer_tokens": Field(ListOf(SecretRef("access.bearer_tokens")), [],
                               "tokens (each 'env:NAME') a client must send as 'Authorization: Bearer'; [] = no token gate"),
        "allow": Field(ListOf(Cidr()), [], "CIDRs allowed to use the MCP endpoints (403 otherwise); [] = everyone"),
        "allowed_origins": Field(Nullable(ListOf(Origin())), None,
                                 "browser origins allowed on the MCP endpoints (403 otherwise); null = no Origin check"),
    },
}

UBUNTU_SCHEMA: Schema = {
    "supergateway": {
        "version": Field(Semver(), "4.0.0", "exact npm version of supergateway (4.x needs Node >= 20)"),
        "node_source": Field(
            Enum("distro", "nodesource"), "distro", "distro | nodesource (when the distro's Node is too old)"
        ),
        "nodesource_major": Field(Int(min=1), 20, "NodeSource major, used only with node_source: nodesource"),
        "stdio_command": Field(
            Str(), "npx -y @modelcontextprotocol/server-everything", "the stdio MCP server to wrap"
        ),
        "working_directory": Field(AbsPath(), "/var/lib/mcp-edge/gateway", "the gateway's only writable path"),
        "environment": Field(
            EnvMap("ubuntu.supergateway.environment"),
            {},
            "extra env for the stdio server: NAME: value; `env:NAME` is read from this machine's environment",
        ),
        "sse_port": Field(Port(), 8001, "loopback port of the SSE instance (/sse, /message)"),
        "http_port": Field(Port(), 8011, "loopback port of the first Streamable HTTP instance (/mcp)"),
        "http_instances": Field(Int(min=1, max=64), 1, "Streamable HTTP instances (ports http_port, +1, ...)"),
        "session_timeout": Field(Duration(min=1), "30m", "idle MCP session reaped after this (seconds)"),
        "log_level": Field(Enum("debug", "info", "none"), "info", "debug | info | none"),
    },
    "nginx": {
        "worker_processes": Field(WorkerProcesses(), "auto", "auto or a number"),
        "worker_rlimit_nofile": Field(Int(min=1), 65535, "open files limit of a worker"),
        "worker_connections": Field(Int(min=1), 16384, "connections per worker"),
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
        "webroot": Field(AbsPath(), "/var/www/mcp-edge-acme", "HTTP-01 challenge files are served from here"),
    },
    "verify": dict(VERIFY_FIELDS),
    "preflight": {
        "min_free_disk": Field(Size(), "1g", "free space each of disk_paths needs before the host is changed"),
        "disk_paths": Field(ListOf(AbsPath()), ["/", "/var"], "file systems checked for min_free_disk"),
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


def min_node_major(supergateway_version: str) -> int | None:
    """The lowest Node.js major a supergateway version runs on (None: no known minimum)."""
    major = int(supergateway_version.split(".")[0])
    return 20 if major >= 4 else None


# --- Cross-field checks of the ubuntu section ----------------------------------------


def _valid(*values: Any) -> bool:
    return all(v is not _INVALID for v in values)


def _check_ubuntu_ports(section: dict, report: Callable[[str, str], None]) -> None:
    sg = section["supergateway"]
    if not _valid(sg):
        return
    key = "ubuntu.supergateway."
    sse, http, count = sg["sse_port"], sg["http_port"], sg["http_instances"]
    if not _valid(sse, http, count):
        return
    if http + count - 1 > 65535:
        report(key + "http_instances", f"ports {http}..{http + count - 1} (http_port + http_instances) exceed 65535")
        return
    used = {80: "nginx (HTTP)", 443: "nginx (HTTPS)"}
    services = [(key + "sse_port", sse, f"the SSE instance ({key}sse_port)")]
    for i in range(count):
        label = f"Streamable HTTP instance {i + 1} of {count} ({key}http_port + {i})"
        services.append((key + "http_port", http + i, label))
    for where, port, label in services:
        if port in used:
            report(where, f"port {port} of {label} is already used by {used[port]} on every ubuntu host")
        else:
            used[port] = label


def _check_ubuntu_node(section: dict, report: Callable[[str, str], None]) -> None:
    sg = section["supergateway"]
    if not _valid(sg):
        return
    if not _valid(sg["version"], sg["node_source"], sg["nodesource_major"]):
        return
    need = min_node_major(sg["version"])
    if need and sg["node_source"] == "nodesource" and sg["nodesource_major"] < need:
        report(
            "ubuntu.supergateway.nodesource_major",
            f"supergateway {sg['version']} (ubuntu.supergateway.version) needs Node >= {need}, "
            f"but ubuntu.supergateway.nodesource_major is {sg['nodesource_major']} (node_source: nodesource)",
        )


SECTION_CHECKS["ubuntu"] = [_check_ubuntu_ports, _check_ubuntu_node]

def _container_schema(name: str, context: str, dockerfile: str, host_port: int, container_port: int,
                      volumes: list[str], environment: dict) -> Schema:
    return {
        "name": Field(Str(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", "a container name"), name, "container name"),
        "build_context": Field(AbsPath(), context, "source directory on the NAS, built with docker build"),
        "dockerfile": Field(Str(r"[A-Za-z0-9][A-Za-z0-9._-]*", "a file name inside build_context"), dockerfile,
                            "Dockerfile inside build_context"),
        "base_image": Field(Str(), "python:3.11-slim", "passed as build arg BASE_IMAGE"),
        "host_port": Field(Port(), host_port, "port published on the NAS (publish_address)"),
        "container_port": Field(Port(), container_port, "port the app listens on inside the container"),
        "volumes": Field(ListOf(Volume()), volumes, "bind mounts /nas/path:/container/path[:ro|rw]"),
        "environment": Field(EnvMap(f"synology.{name.replace('-', '_')}.environment"), environment,
                             "container environment; `env:NAME` is read from this machine's environment"),
        "restart": Field(Enum("no", "always", "unless-stopped", "on-failure"), "unless-stopped", "restart policy"),
        "health_path": Field(Str(r"/\S*", "an absolute URL path"), "/health", "HTTP path that answers 200 when healthy"),
        "health_timeout": Field(Duration(min=5), "90s", "how long a new container may take to become healthy"),
    }


SYNOLOGY_SCHEMA: Schema = {
    "docker": Field(Str(r"auto|/\S+", "'auto' or an absolute path"), "auto",
                    "docker CLI: auto (probe DSM 7.2, 7.1, /usr/local/bin paths) or an absolute path"),
    "bundle_dir": Field(AbsPath(), "/volume1/mcp-edge",
                        "on a volume (survives DSM updates): guard script, managed copies, env files, backups"),
    "certificate_conf": Field(AbsPath(), "/usr/syno/etc/www/certificate/system_default/cert.conf",
                              "DSM's cert.conf (ssl_certificate lines) for the MCP hostname"),
    "publish_address": Field(Address(), "127.0.0.1", "NAS address the container ports are published on"),
    "upstream_host": Field(Address(), "127.0.0.1", "where DSM's nginx reaches the published ports"),
    "patch_entries": Field(ListOf(Domain()), [],
                           "hostnames of DSM reverse-proxy entries to patch in place for streaming (patch mode)"),
    "guard_interval": Field(Duration(min=60), "5m", "how often the on-NAS guard re-checks the managed files"),
    "preflight": {
        "min_free_disk": Field(Size(), "1g", "free space the volume of bundle_dir needs before the NAS is changed"),
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


def _check_synology(section: dict, report: Callable[[str, str], None]) -> None:
    api, mcp = section["loop_api"], section["loop_mcp"]
    if not _valid(api, mcp):
        return
    if _valid(api["host_port"], mcp["host_port"]) and api["host_port"] == mcp["host_port"]:
        report("synology.loop_mcp.host_port",
               f"port {mcp['host_port']} is also synology.loop_api.host_port: two services on one port")
    for port_key in ("host_port",):
        for name, c in (("loop_api", api), ("loop_mcp", mcp)):
            if _valid(c[port_key]) and c[port_key] in (80, 443):
                report(f"synology.{name}.{port_key}", f"port {c[port_key]} is DSM's nginx")
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


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping."""


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


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Validator:
    def __init__(self, display: str, ctx: _Context):
        self.display = display
        self.ctx = ctx
        self.problems: list[str] = []

    def report(self, key: str, message: str) -> None:
        self.problems.append(f"{self.display}: {key}: {message}" if key else f"{self.display}: {message}")

    def value(self, kind: Kind, value: Any, key: str, default: bool = False) -> Any:
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
                self.report(f"{key}.{name}", _unknown(name, schema, "key"))
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
    close = difflib.get_close_matches(str(name), names, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _read(display: str) -> Any:
    try:
        with open(display, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SettingsError(f"{display}: file not found (start from settings.example.yaml)") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{display}: not UTF-8 text") from None
    except OSError as e:
        raise SettingsError(f"{display}: cannot read: {e.strerror or e}") from None
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SettingsError(f"{display}: {where}invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise SettingsError(f"{display}: invalid YAML: {e}") from None


def load(path: str | os.PathLike) -> Settings:
    """Read and validate a settings file; raise SettingsError listing every problem."""
    display = os.fspath(path)
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
        if name in RESERVED_GROUPS:
            v.report(str(name), f"the {name} group is not supported yet (no '{name}' settings section is registered)")
        else:
            v.report(str(name), _unknown(name, sections_known, "top-level section"))

    ssh = v.section(SSH_SCHEMA, raw.get("ssh"), "ssh")
    hosts_raw = raw.get("hosts")
    if "hosts" not in raw:
        v.report("hosts", "missing required section (a list of hosts: name, group, address, domain)")
        hosts_raw = []
    elif not isinstance(hosts_raw, list) or not hosts_raw:
        v.report("hosts", f"expected a non-empty list of hosts, got {_show(hosts_raw)}")
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
                text = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            v.report(f"{key}.sudo_password_file", f"cannot read {file!r}: {getattr(e, 'strerror', None) or e}")
            result = _INVALID
        else:
            if not text:
                v.report(f"{key}.sudo_password_file", f"file {file!r} is empty")
                result = _INVALID
            else:
                result = Secret(text)
    cache[key] = result
    return result


def _hosts(v: _Validator, ssh: Any, entries: list) -> list[HostSettings]:
    hosts: list[HostSettings] = []
    names: dict[str, str] = {}
    domains: dict[str, str] = {}
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
        return use(os.environ.get(ENV_VAR, DEFAULT_PATH))
    return _current

# The control: section (drift repair) registers itself; imported last, it sees
# everything above.
from . import control as _control  # noqa: E402,F401
