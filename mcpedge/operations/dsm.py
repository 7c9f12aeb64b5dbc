"""Synology DSM: the guard, Task Scheduler and boot-up tasks, the NAS pre-flight."""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File

from ..facts.docker import DockerPublishedPorts
from ..facts.dsm import (
    DOCKER_CANDIDATES,
    DSM_PATH,
    DsmReverseProxyEntries,
    DsmScheduledTasks,
    DsmVersion,
    GuardStatus,
    SynologyDocker,
)
from ..facts.nginx import NginxVersion
from .preflight import check_free_disk, check_ports


@operation()
def guard_sync(script, config):
    """
    Make DSM's nginx match the bundle's managed copies, through the on-NAS
    guard (the same script the NAS runs at boot and on schedule): nothing
    happens when every managed file is in place and every patched entry is
    patched; otherwise the guard restores them, validates with ``nginx -t``,
    reloads, and puts the previous files back if validation fails.

    + script: the guard program on the host
    + config: its config file (files/README.md)

    .. code:: python

        guard_sync(name="DSM nginx in place", script="/volume1/mcp-edge/bin/mcp-edge-guard",
                   config="/volume1/mcp-edge/guard.conf")
    """
    pending = host.get_fact(GuardStatus, script=script, config=config)
    if pending == []:
        host.noop("DSM nginx files are in place")
        return
    yield StringCommand(QuoteString(script), QuoteString(config), "apply")


@operation()
def dsm_scheduled_task(task, script, every_minutes):
    """
    A root Task Scheduler job on DSM that runs ``script`` every N minutes,
    registered through ``synowebapi`` (docs/dsm.md §9: never /etc/crontab, which DSM
    rewrites). A task of the same name with other settings is replaced.

    .. code:: python

        dsm_scheduled_task(name="Guard every 5 minutes", task="mcp-edge guard",
                           script="/volume1/mcp-edge/bin/mcp-edge-guard apply", every_minutes=5)
    """
    api = "/usr/syno/bin/synowebapi"
    wanted_schedule, wanted_extra = {"repeat_min": every_minutes}, {"script": script}
    existing = [t for t in host.get_fact(DsmScheduledTasks)["tasks"] if t.get("name") == task]
    if len(existing) == 1 and existing[0].get("schedule") == wanted_schedule \
            and existing[0].get("extra") == wanted_extra and existing[0].get("enable", True):
        host.noop(f"task {task!r} is registered")
        return
    if existing:
        yield StringCommand(api, "--exec-fastwebapi", "api=SYNO.Core.TaskScheduler.Root", "version=4", "method=delete",
                            QuoteString("tasks=" + json.dumps([t["id"] for t in existing])))
    yield StringCommand(
        api, "--exec-fastwebapi", "api=SYNO.Core.TaskScheduler.Root", "version=4", "method=create",
        QuoteString(f"name={task}"), "owner=root", "real_owner=root", "enable=true", "type=script",
        QuoteString("schedule=" + json.dumps(wanted_schedule)), QuoteString("extra=" + json.dumps(wanted_extra)),
    )


@operation()
def dsm_boot_task(task, script):
    """
    A root boot-up triggered task on DSM (docs/dsm.md §9: Task Scheduler, event
    ``bootup``), registered through ``synowebapi``.

    .. code:: python

        dsm_boot_task(name="Guard at boot", task="mcp-edge guard (boot)",
                      script="/volume1/mcp-edge/bin/mcp-edge-guard apply")
    """
    events = [e for e in host.get_fact(DsmScheduledTasks)["events"] if e.get("task_name") == task]
    if events and events[0].get("operation") == script and events[0].get("event") == "bootup":
        host.noop(f"boot-up task {task!r} is registered")
        return
    yield StringCommand(
        "/usr/syno/bin/synowebapi", "--exec", "api=SYNO.Core.EventScheduler", "version=1", "method=create",
        QuoteString(f"task_name={task}"), "event=bootup", "operation_type=script",
        QuoteString(f"operation={script}"), QuoteString('owner={"0": "root"}'),
    )


@operation()
def dsm_preflight(domain, patch_entries=(), min_dsm=(7, 0), min_free_disk=1 << 30, volume_path="/volume1",
                  loop_ports=None, publish_address="127.0.0.1", docker=None):
    """
    Refuse to touch a NAS that is not what the deploy assumes: DSM 7, a docker
    CLI, nginx, enough free disk on the volume, the loop ports free or held by
    the bundle's own containers, and no DSM reverse-proxy entry already
    claiming the hostname the bundle serves with its own server block. Changes nothing.

    + loop_ports: {host port: container name} of loop-api and loop-mcp
    + publish_address: the NAS address they are published on (another address does not clash)
    + docker: the docker CLI set in the settings (``synology.docker``); None: probe DSM's paths

    .. code:: python

        dsm_preflight(name="NAS pre-flight", domain="loop.example.com")
    """
    version = host.get_fact(DsmVersion)
    if version is None or version < min_dsm:
        raise OperationError(f"{host.name}: not DSM {min_dsm[0]} or newer (/etc.defaults/VERSION: {version})")
    if docker is not None:
        info = host.get_fact(File, path=docker)
        if not info or not int(str(info["mode"]), 8) & 0o111:  # pyinfra gives 755 as the int 755
            raise OperationError(f"{host.name}: synology.docker {docker!r} is not an executable on the NAS "
                                 f"(Container Manager installed? 'auto' probes {', '.join(DOCKER_CANDIDATES)})")
    elif (docker := host.get_fact(SynologyDocker)) is None:
        raise OperationError(f"{host.name}: no docker CLI found (install Container Manager; probed "
                             f"{', '.join(DOCKER_CANDIDATES)}) or set synology.docker")
    # DSM's sudo PATH may lack nginx's directory: the guard's PATH (docs/dsm.md §8).
    if host.get_fact(NginxVersion, _env={"PATH": DSM_PATH}) is None:
        raise OperationError(f"{host.name}: no nginx found: DSM's web server is what serves the MCP hostname")
    check_free_disk([volume_path], min_free_disk)
    loop_ports = loop_ports or {}
    for port, container in loop_ports.items():
        anywhere = ("0.0.0.0", "::")
        others = [n for n, address in host.get_fact(DockerPublishedPorts, docker=docker).get(port, [])
                  if n not in (container, f"{container}.mcp-edge-previous")
                  and (address == publish_address or address in anywhere or publish_address in anywhere)]
        if others:
            raise OperationError(f"{host.name}: port {port} (for {container}) is already published by container "
                                 f"{', '.join(others)}; stop it or choose another host_port in the settings.")
    check_ports({p: f"for {c}" for p, c in loop_ports.items()},
                 lambda listener: listener["process"] in ("docker-proxy", "dockerd"))
    for entry in host.get_fact(DsmReverseProxyEntries):
        if entry["fqdn"] == domain and entry["port"] == 443 and domain not in patch_entries:
            raise OperationError(
                f"{host.name}: DSM reverse-proxy entry {entry['description']!r} ({entry['uuid']}) already serves "
                f"{domain}:443, which mcp-edge serves with its own server block. Resolve it: delete that entry in "
                f"Control Panel > Login Portal > Advanced > Reverse Proxy, or list {domain} under "
                f"synology.patch_entries to keep DSM's entry and patch it for streaming instead."
            )
    host.noop("the NAS is DSM with docker and no conflicting reverse-proxy entry")
    yield from ()  # checks only: never a command
