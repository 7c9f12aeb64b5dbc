"""Read and validate a settings file: the YAML loader, the validator, host merging, the result.

- YAML (:func:`_read`): a SafeLoader that refuses a key given twice and reads
  numbers in plain decimal only (YAML 1.1 would read ``022`` as 18 and
  ``1:30`` as 90), a budget of nodes after alias expansion and of nesting,
  and a file size limit.
- :class:`_Validator`: applies a schema of ``schema.py`` to a section,
  screens every value for control characters first, fills in defaults and
  collects every problem as ``<file>: <dotted.key>: <what was expected>``.
- :func:`load`: the sections of ``schema.SECTIONS`` in their order, then the
  hosts merged with ``ssh:`` (:func:`_hosts`, :func:`_sudo_secret`); every
  problem found is raised together in one :class:`SettingsError`.
- :class:`Settings` and :class:`HostSettings`: the result, and the pyinfra
  inventory made from it.
- The current settings of this process: :func:`use`, :func:`current`,
  :func:`inventory_or_exit`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from .environment import _read_env_secret
from .kinds import Kind, YamlScalar, _Context, _forbidden_char, _Invalid, _show
from .schema import (
    _INVALID,
    GROUP_SCHEMAS,
    INHERIT,
    REQUIRED,
    SECTIONS,
    SSH_SCHEMA,
    Schema,
    Section,
    _valid,
    known_groups,
)
from .secrets import Secret

ENV_VAR = "MCP_EDGE_SETTINGS"
DEFAULT_PATH = "settings.yaml"


class SettingsError(ValueError):
    """One or more problems in the settings file, one ``file: key: message`` a line."""

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
            # "<secret>"; mcpedge.pyinfra_compat.sudo_askpass reveals it into a 0700 askpass file.
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
    sections_known = list(SECTIONS)
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
        v.report(shown, _unknown(name, sections_known, "top-level section"))

    # ssh: and hosts: first: every host inherits the keys of ssh:, and a group
    # section is required only when a host is in that group.
    ssh = _checked(v, "ssh", SECTIONS["ssh"], raw.get("ssh"))
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

    entries = [v.section(SECTIONS["hosts"].schema, entry, f"hosts[{i}]") for i, entry in enumerate(hosts_raw)]
    used_groups = {e["group"] for e in entries if e is not _INVALID}

    sections: dict[str, Any] = {"ssh": ssh}
    for name, section in SECTIONS.items():
        if name in ("ssh", "hosts"):
            continue
        lenient = name not in raw and name not in used_groups
        sections[name] = _checked(v, name, section, raw.get(name), lenient)

    hosts = _hosts(v, ssh, entries)

    if v.problems:
        raise SettingsError(v.problems)
    return Settings(display, raw, sections, hosts)


def _checked(v: _Validator, name: str, section: Section, data: Any, lenient: bool = False) -> Any:
    """A top-level section checked against its schema, then (if all of it could be read) its checks."""
    value = v.section(section.schema, data, name, lenient=lenient)
    if value is not _INVALID:
        for check in section.checks:
            check(value, v.report)
    return value


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
