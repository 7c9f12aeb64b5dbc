"""The schema: every top-level section of the settings file, its settings and its cross-field checks.

:data:`SECTIONS` (at the end) is the one table of the sections, in the order
the loader reads and reports them::

    ssh:      how pyinfra reaches the hosts (defaults for every host)
    hosts:    a list of hosts: name, group, address, domain + any ``ssh`` key
    ubuntu:   settings of the hosts in group ``ubuntu`` (one section per group)
    synology: settings of the hosts in group ``synology`` (a Synology NAS)
    control:  settings of the hosts in group ``control`` (drift repair)

Each entry is a :class:`Section`: its schema (key -> :class:`Field`, or key
-> nested schema), whether it is a host group (``group: <name>`` hosts are
valid) and its cross-field checks. A section is declared by adding it to
that table; from outside this module (a test, a new target), with
:func:`add_section`, the one way to change the table. GROUP_SCHEMAS,
:func:`known_groups`, DEFAULTS and :func:`iter_fields` are derived from it
whenever they are read, never kept beside it.

The kinds the fields use are in ``kinds.py``, ``names.py``, ``paths.py``
and ``environment.py``; the loader (``loader.py``) applies the table.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .environment import EnvMap, EnvName, SecretRef
from .kinds import (
    Bool,
    Choice,
    Duration,
    Enum,
    Int,
    Kind,
    ListOf,
    Nullable,
    Port,
    Rate,
    Size,
    Str,
    WorkerProcesses,
)
from .names import (
    AcmeServer,
    Address,
    Cidr,
    Command,
    Domain,
    Email,
    GroupName,
    ImageRef,
    IpAddress,
    Origin,
    UserName,
)
from .paths import AbsPath, DockerCli, LocalPath, Volume

# --- Fields, sections and the table's interface ------------------------------------------


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = _Sentinel("REQUIRED")  # Field default: the key must be given
INHERIT = _Sentinel("INHERIT")  # Field default in a host entry: take it from `ssh:`
_INVALID = _Sentinel("_INVALID")  # placeholder for a value that failed validation


def _valid(*values: Any) -> bool:
    return all(v is not _INVALID for v in values)


@dataclass(frozen=True)
class Field:
    """One setting. ``default`` is written as in YAML (``"24h"``, ``"~/.ssh/x"``)
    and goes through ``kind`` like a given value; REQUIRED means it must be given."""

    kind: Kind
    default: Any = REQUIRED
    doc: str = ""


# A schema is a dict: key -> Field, or key -> nested schema dict (a subsection).
Schema = dict


# A cross-field check gets (normalized section, report) and calls
# report(dotted_key, message) per problem. Values that failed their own check
# are _INVALID; checks skip those.
Check = Callable[[dict, Callable[[str, str], None]], None]


@dataclass(frozen=True)
class Section:
    """One top-level section of the settings file.

    ``group``: a host group; hosts with ``group: <name>`` are valid and the
    section holds their settings. ``checks``: its cross-field checks, run on
    the normalized section when every value in it could be read. ``entries``:
    the section is a list, each entry checked against ``schema`` (``hosts:``
    only; the loader reads ``ssh:`` and ``hosts:`` first, and checks the host
    list as a whole itself)."""

    schema: Schema
    group: bool
    checks: tuple[Check, ...] = ()
    entries: bool = False


def add_section(name: str, section: Section) -> None:
    """Add a top-level section after those of :data:`SECTIONS` (a new target, a test).

    The one way to change the table: a section may not replace another, and
    only ``hosts:`` is a list of entries."""
    if not isinstance(section, Section):
        raise TypeError(f"expected a Section, got {section!r}")
    if name in SECTIONS:
        raise ValueError(f"the settings section {name!r} exists already")
    if section.entries:
        raise ValueError("only the hosts section is a list of entries")
    SECTIONS[name] = section


class _View(Mapping):
    """A read-only mapping derived from :data:`SECTIONS` each time it is read."""

    def __init__(self, name: str, select: Callable[[Section], bool], value: Callable[[Section], Any]):
        self._name, self._select, self._value = name, select, value

    def __getitem__(self, key: str) -> Any:
        section = SECTIONS.get(key)
        if section is None or not self._select(section):
            raise KeyError(key)
        return self._value(section)

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, section in SECTIONS.items() if self._select(section)])

    def __len__(self) -> int:
        return sum(1 for section in SECTIONS.values() if self._select(section))

    def __repr__(self) -> str:
        return f"<{self._name}: {', '.join(self)}>"


def _defaults(schema: Schema) -> dict:
    return {
        key: _defaults(spec) if isinstance(spec, dict) else copy.deepcopy(spec.default)
        for key, spec in schema.items()
    }


# The schema of each host group, by name.
GROUP_SCHEMAS: Mapping[str, Schema] = _View("GROUP_SCHEMAS", lambda s: s.group, lambda s: s.schema)
# The defaults of every section but the host list, as written in YAML (a fresh copy on each read).
DEFAULTS: Mapping[str, dict] = _View("DEFAULTS", lambda s: not s.entries, lambda s: _defaults(s.schema))


def known_groups() -> list[str]:
    """The host groups (the sections with ``group=True``), in table order."""
    return [name for name, section in SECTIONS.items() if section.group]


def iter_fields(schema: Schema | None = None, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """Every setting as (dotted key, Field); without arguments: all sections."""
    if schema is None:
        for name, section in SECTIONS.items():
            yield from iter_fields(section.schema, f"{name}[]" if section.entries else name)
        return
    for key, spec in schema.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            yield from iter_fields(spec, dotted)
        else:
            yield dotted, spec


# --- ssh: and hosts: ------------------------------------------------------------------------


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
    "group": Field(GroupName(known_groups), REQUIRED, "ubuntu | synology | control"),
    "address": Field(Address(), REQUIRED, "IP or DNS name to SSH to"),
    "domain": Field(Nullable(Domain()), None, "public name of the MCP endpoint (required in groups ubuntu and synology)"),
    # any key of `ssh:` may be overridden per host
    **{key: Field(f.kind, INHERIT, f"per-host override of ssh.{key}") for key, f in SSH_SCHEMA.items()},
}


# --- ubuntu: ----------------------------------------------------------------------------------


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


# --- synology: --------------------------------------------------------------------------------


# DSM's own web ports (DSM, its HTTPS, nginx): a container may not take them.
DSM_PORTS = {80: "DSM's nginx", 443: "DSM's nginx", 5000: "DSM's web UI", 5001: "DSM's web UI (HTTPS)"}
VOLUMES = ("/volume1", "/volume2", "/volume3", "/volume4", "/volume5", "/volume6", "/volume7", "/volume8",
           "/volume9")

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


# --- control: (drift repair; mcpedge.model.control renders its units) --------------------------------


CONTROL_SCHEMA: Schema = {
    "bundle_dir": Field(AbsPath(), "/opt/mcp-edge", "the bundle's checkout on the control host (the units run from it)"),
    "python": Field(Nullable(AbsPath()), None, "Python with the bundle's requirements; null = <bundle_dir>/.venv/bin/python"),
    "settings_file": Field(Nullable(AbsPath()), None, "settings file on the control host; null = <bundle_dir>/settings.yaml"),
    "inventory": Field(Str(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}\.py",
                           "a .py file path relative to bundle_dir (letters, digits, '.', '_', '-', '/'; no '..')"),
                       "inventory.py", "inventory file, relative to bundle_dir"),
    "environment_file": Field(
        Nullable(AbsPath()), None,
        "0600 file on the control host with the variables the settings name (env:NAME, *_password_env)",
    ),
    "user": Field(UserName(), "root", "user the drift service runs as"),
    "interval": Field(Duration(60, 7 * 86400), "30m", "time between drift checks"),
    "jitter": Field(Duration(0, 86400), "2m", "random delay added to each check (RandomizedDelaySec)"),
    "repair": Field(Bool(), True, "apply when drift is found (false: check and report only)"),
    "state_dir": Field(AbsPath(dedicated=True), "/var/lib/mcp-edge-drift", "reports and the last converged digests are kept here"),
    "notify_command": Field(
        Nullable(Str(max_len=4096)), None,
        "shell command run on a corrective change or a failure ($MCP_EDGE_DRIFT_EVENT, $MCP_EDGE_DRIFT_REPORT)",
    ),
}


# --- The table ---------------------------------------------------------------------------------


SECTIONS: dict[str, Section] = {
    "ssh": Section(SSH_SCHEMA, group=False),
    "hosts": Section(HOST_SCHEMA, group=False, entries=True),
    "ubuntu": Section(UBUNTU_SCHEMA, group=True, checks=(_check_ubuntu,)),
    "synology": Section(SYNOLOGY_SCHEMA, group=True, checks=(_check_synology,)),
    "control": Section(CONTROL_SCHEMA, group=True),
}
