"""Read and validate the operator's settings file before any host is contacted.

The file (``settings.yaml``, or ``$MCP_EDGE_SETTINGS``) has these top-level
sections::

    ssh:      how pyinfra reaches the hosts (defaults for every host)
    hosts:    a list of hosts: name, group, address, domain + any ``ssh`` key
    ubuntu:   settings of the hosts in group ``ubuntu`` (one section per group)
    synology: settings of the hosts in group ``synology``
    control:  settings of the hosts in group ``control`` (drift repair)

The schema is the documented reference of every setting: each key is a
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

What lands where (each module imports only those above it in this list):

- ``secrets``: :class:`Secret` and :func:`reveal`.
- ``kinds``: the :class:`Kind` base, the control-character screen and the
  general kinds (Str, Bool, Int, Port, Duration, Choice, Rate, Size, Enum,
  WorkerProcesses, ListOf, Nullable), :func:`size_bytes`.
- ``paths``: AbsPath (SYSTEM_DIRS, SYSTEM_TREES), LocalPath, Volume, DockerCli.
- ``names``: Domain, Address, IpAddress, Email, HttpsUrl, AcmeServer, Cidr,
  Origin, ImageRef, UserName, Command, GroupName.
- ``environment``: EnvName, EnvMap, SecretRef, the reserved variable names.
- ``schema``: :class:`Field`, :class:`Section` and ``SECTIONS``, the one table
  of every top-level section with its cross-field checks (a section is added
  there, or with :func:`add_section`); GROUP_SCHEMAS, :func:`known_groups`,
  DEFAULTS and :func:`iter_fields` derived from it.
- ``loader``: the YAML loader, the validator, host merging, :class:`Settings`,
  :func:`load`, and the current settings of this process (:func:`use`,
  :func:`current`, :func:`inventory_or_exit`).

This package is the public interface: import from ``mcpedge.settings``.
"""

from __future__ import annotations

from ..escape import host_port
from .environment import RESERVED_ENV, RESERVED_ENV_PREFIXES, EnvMap, EnvName, SecretRef
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
    YamlScalar,
    size_bytes,
)
from .loader import (
    DEFAULT_PATH,
    ENV_VAR,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    HostSettings,
    Settings,
    SettingsError,
    current,
    inventory_or_exit,
    load,
    use,
)
from .names import (
    ACME_DIRECTORIES,
    AcmeServer,
    Address,
    Cidr,
    Command,
    Domain,
    Email,
    GroupName,
    HttpsUrl,
    ImageRef,
    IpAddress,
    Origin,
    UserName,
)
from .paths import SYSTEM_DIRS, SYSTEM_TREES, AbsPath, DockerCli, LocalPath, Volume
from .schema import (
    CONTROL_SCHEMA,
    DEFAULTS,
    DSM_PORTS,
    GROUP_SCHEMAS,
    HOST_SCHEMA,
    INHERIT,
    MCP_NGINX_FIELDS,
    REQUIRED,
    SECTIONS,
    SSH_SCHEMA,
    SYNOLOGY_SCHEMA,
    UBUNTU_SCHEMA,
    VERIFY_FIELDS,
    VOLUMES,
    Check,
    Field,
    Schema,
    Section,
    add_section,
    iter_fields,
    known_groups,
)
from .secrets import Secret, reveal

__all__ = [
    # the file and its result
    "DEFAULT_PATH",
    "ENV_VAR",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "HostSettings",
    "Settings",
    "SettingsError",
    "current",
    "inventory_or_exit",
    "load",
    "use",
    # secrets
    "Secret",
    "reveal",
    # the schema
    "CONTROL_SCHEMA",
    "DEFAULTS",
    "DSM_PORTS",
    "GROUP_SCHEMAS",
    "HOST_SCHEMA",
    "INHERIT",
    "MCP_NGINX_FIELDS",
    "REQUIRED",
    "SECTIONS",
    "SSH_SCHEMA",
    "SYNOLOGY_SCHEMA",
    "UBUNTU_SCHEMA",
    "VERIFY_FIELDS",
    "VOLUMES",
    "Check",
    "Field",
    "Schema",
    "Section",
    "add_section",
    "iter_fields",
    "known_groups",
    # the kinds
    "ACME_DIRECTORIES",
    "RESERVED_ENV",
    "RESERVED_ENV_PREFIXES",
    "SYSTEM_DIRS",
    "SYSTEM_TREES",
    "AbsPath",
    "AcmeServer",
    "Address",
    "Bool",
    "Choice",
    "Cidr",
    "Command",
    "DockerCli",
    "Domain",
    "Duration",
    "Email",
    "EnvMap",
    "EnvName",
    "Enum",
    "GroupName",
    "HttpsUrl",
    "ImageRef",
    "Int",
    "IpAddress",
    "Kind",
    "ListOf",
    "LocalPath",
    "Nullable",
    "Origin",
    "Port",
    "Rate",
    "SecretRef",
    "Size",
    "Str",
    "UserName",
    "Volume",
    "WorkerProcesses",
    "YamlScalar",
    # values as they are written into host files
    "host_port",
    "size_bytes",
]
