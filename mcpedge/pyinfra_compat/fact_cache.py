"""Read a host's facts in one round trip when nothing has changed there.

pyinfra 3.10 runs one SSH command (under sudo) per fact: ~80 of them, ~100 ms
each, for a converged Ubuntu host, so a no-op re-apply took ~10 s. Here:

- **Cache.** A fact's answer cannot change while no command runs on the host
  (the assumption pyinfra's own change detection makes), so answers are kept per
  host and dropped as soon as the deploy runs a command or uploads a file there;
  whatever is asked after that is read again.
- **Batch.** The facts a host was asked for are remembered after each run (a
  *plan*: fact names and arguments, such as paths; never a value, never a
  secret) under ``$XDG_CACHE_HOME/mcp-edge/fact-plans/``. On the next run the
  host's first fact reads the whole plan in one command and fills the cache. A
  plan that no longer fits only costs reads: every fact not in it is read as
  before, and a batch that fails as a whole is ignored.

A fact class with ``stable = True`` (the nginx version, the NAS's docker CLI:
what an operation may install but nothing removes during a run) keeps its
answer across commands once it is not ``None``.

Installed by :func:`mcpedge.pyinfra_compat.install` (pyinfra 3.10.0 only).
``MCP_EDGE_FACT_PLANS=off`` turns the batch off (the cache stays).
"""

from __future__ import annotations

import atexit
import copy
import importlib
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path

from pyinfra import logger
from pyinfra.api import StringCommand
from pyinfra.api import facts as _facts
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.host import Host

_CACHE = "_mcp_edge_fact_cache"  # key -> value, valid while no command ran
_READING = "_mcp_edge_reading_fact"  # >0 while a fact's own command runs
_ASKED = "_mcp_edge_facts_asked"  # plan entries this run, in order
_PLANNED = "_mcp_edge_plan_done"  # the plan was read (or there was none)
_DEFAULT = "_mcp_edge_default_connector"

_original_get_fact = _facts._get_fact
_original_run = Host.run_shell_command
_original_put = Host.put_file
_hosts: list[Host] = []


def plan_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcp-edge" / "fact-plans"


def _plan_path(host) -> Path:
    # Keyed by where the host is reached too: two inventories may both name a host gw1.
    where = f"{host.name}@{host.data.get('ssh_hostname') or host.name}_{host.data.get('ssh_port') or 22}"
    return plan_dir() / (re.sub(r"[^A-Za-z0-9@._-]", "_", where) + ".json")


def _plans_on() -> bool:
    return os.environ.get("MCP_EDGE_FACT_PLANS", "on") != "off"


def _connector(global_kwargs: dict) -> dict:
    return {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}


def _plain(fact_kwargs: dict) -> dict:
    return {k: v for k, v in fact_kwargs.items() if k != "self"}  # getcallargs adds the fact


def _key(cls, fact_kwargs: dict, connector: dict) -> tuple:
    # JSON, so a plan's lists match the tuples an operation passes; how the
    # command runs (sudo, user, env...) is part of what it answers.
    return (cls, json.dumps(_plain(fact_kwargs), sort_keys=True, default=repr),
            repr(sorted(connector.items())))


def _default_connector(state, host) -> dict:
    """The connector arguments of a fact asked outside any operation override
    (the host's data: sudo and its password); the same all run long."""
    if _DEFAULT not in host.__dict__:
        previous = host.current_op_global_arguments
        host.current_op_global_arguments = None
        try:
            host.__dict__[_DEFAULT] = _connector(_facts._handle_fact_kwargs(state, host, Host, None, None)[1])
        finally:
            host.current_op_global_arguments = previous
    return host.__dict__[_DEFAULT]


@contextmanager
def _reading(host):
    """A fact's own command runs: it changes nothing, the cache stays."""
    setattr(host, _READING, getattr(host, _READING, 0) + 1)
    try:
        yield
    finally:
        setattr(host, _READING, getattr(host, _READING) - 1)


def _remember(state, host, cls, fact_kwargs: dict, connector: dict) -> None:
    if connector != _default_connector(state, host) or cls.shell_executable:
        return  # batches run with the defaults only
    entry = [cls.__module__, cls.__name__, _plain(fact_kwargs)]
    try:
        json.dumps(entry)
    except TypeError:
        return
    asked = host.__dict__.setdefault(_ASKED, [])
    if entry not in asked:
        asked.append(entry)


def _load_plan(host) -> list:
    try:
        entries = json.loads(_plan_path(host).read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _batch(state, host) -> None:
    """Read every fact of the host's plan with one command; fill the cache."""
    facts = []
    for entry in _load_plan(host):
        try:
            module, name, kwargs = entry
            cls = getattr(importlib.import_module(module), name)
            fact = cls()
            if fact.check_preconditions(state, host):
                continue
            command = _facts._make_command(fact.command, dict(kwargs))
            requires = _facts._make_command(fact.requires_command, dict(kwargs))
        except Exception:  # noqa: BLE001 - a stale plan entry is skipped
            continue
        facts.append((cls, fact, kwargs, command, requires))
    if not facts:
        return
    marker = f"@@mcp-edge-{secrets.token_hex(6)}"
    parts: list = []
    for i, (_, _, _, command, requires) in enumerate(facts):
        parts += ["echo", f"'{marker} {i}';"]
        if requires:
            parts += ["if", "command", "-v", requires, ">/dev/null", "2>&1;", "then", "(", command, ")",
                      "2>/dev/null;", "else", "echo", f"'{_facts._MISSING_COMMAND_MARKER}';", "fi;"]
        else:
            parts += ["(", command, ")", "2>/dev/null;"]
        parts += ["echo", f'"{marker}-rc $?";']
    connector = _default_connector(state, host)
    if not host.connected:
        host.connect(reason="to read its facts", raise_exceptions=True)
    try:
        with _reading(host):
            ok, output = _original_run(host, StringCommand(*parts), print_output=False, print_input=False,
                                       **connector)
    except Exception as exc:  # noqa: BLE001 - the facts are then read one by one
        logger.debug("fact batch on %s failed: %s", host.name, exc)
        return
    if not ok:
        return
    # Split the output at the markers: index -> (lines, exit status).
    results: dict[int, tuple[list, int]] = {}
    current, lines = None, []
    for line in output.stdout_lines:
        if line.startswith(f"{marker}-rc "):
            if current is not None:
                results[current] = (lines, int(line.rsplit(" ", 1)[1]))
            current, lines = None, []
        elif line.startswith(f"{marker} "):
            current, lines = int(line.rsplit(" ", 1)[1]), []
        elif current is not None:
            lines.append(line)
    cache = host.__dict__.setdefault(_CACHE, {})
    for i, (cls, fact, kwargs, _, _) in enumerate(facts):
        if i not in results:
            continue
        lines, status = results[i]
        if lines == [_facts._MISSING_COMMAND_MARKER]:
            continue  # pyinfra decides what a missing command means
        try:
            # As pyinfra: a failed command or no output is the default value.
            value = fact.process(lines) if status == 0 and lines else fact.default()
        except Exception:  # noqa: BLE001 - read it the normal way
            continue
        cache[_key(cls, kwargs, connector)] = value
    logger.debug("fact batch on %s: %d of %d facts", host.name, len(cache), len(facts))


def _get_fact(state, host, cls, args=None, kwargs=None, ensure_hosts=None, apply_failed_hosts=True):
    if not host.__dict__.get(_PLANNED):
        host.__dict__[_PLANNED] = True
        _hosts.append(host)
        if _plans_on():
            _batch(state, host)
    fact_kwargs, global_kwargs = _facts._handle_fact_kwargs(state, host, cls, args, kwargs)
    connector = _connector(global_kwargs)
    _remember(state, host, cls, fact_kwargs, connector)
    cache = host.__dict__.setdefault(_CACHE, {})
    key = _key(cls, fact_kwargs, connector)
    if key not in cache:
        with _reading(host):
            cache[key] = _original_get_fact(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
    return copy.deepcopy(cache[key])  # operations may modify what they get


@atexit.register
def _save_plans() -> None:
    if not _plans_on():
        return
    for host in _hosts:
        asked = host.__dict__.get(_ASKED)
        if not asked:
            continue
        path = _plan_path(host)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.touch(mode=0o600)  # the host's layout: nobody else's business
            tmp.write_text(json.dumps(asked))
            tmp.replace(path)
        except OSError:
            pass  # only a cache


def _forget_if_changing(host: Host) -> None:
    # A command that is not a fact's own may change anything the facts saw,
    # except what stays put once present (a stable fact's non-None answer).
    if not getattr(host, _READING, 0) and _CACHE in host.__dict__:
        host.__dict__[_CACHE] = {key: value for key, value in host.__dict__[_CACHE].items()
                                 if value is not None and getattr(key[0], "stable", False)}


def run_shell_command(self, *args, **kwargs):
    _forget_if_changing(self)
    return _original_run(self, *args, **kwargs)


def put_file(self, *args, **kwargs):
    _forget_if_changing(self)
    return _original_put(self, *args, **kwargs)


def install() -> None:
    """Put the cache in pyinfra's fact path and its command and upload calls (idempotent)."""
    _facts._get_fact = _get_fact
    Host.run_shell_command = run_shell_command
    Host.put_file = put_file
