"""Custom pyinfra operations used by the mcp-edge tasks."""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.api.util import get_template
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import files
from pyinfra.operations.util import files as file_utils

from . import pyinfra_compat
from .settings import reveal
from .facts import (
    DOCKER_CANDIDATES, LETSENCRYPT, CertbotCertificate, DirectoryDigest, DockerContainerState, DockerImageLabel,
    DockerPublishedPorts, DsmReverseProxyEntries, DsmScheduledTasks, DsmVersion, FreeDisk, GuardStatus,
    ListeningPorts, MaskedEnvFile, NginxVersion, SudoUser, SynologyDocker,
)

# nginx 1.25.1 replaced `listen ... http2` with the `http2 on;` directive.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


@operation()
def nginx_template(src, dest, user="root", group="root", mode="644", create_remote_dir=True, **data):
    """
    Render an nginx template that may depend on the installed nginx version.

    + src: local Jinja2 template
    + dest: remote path
    + user/group/mode: ownership and permissions of the file
    + create_remote_dir: create the parent directory if missing (False where an
      earlier operation or package creates it, so ``--dry --diff`` shows the
      file's diff on a fresh host)
    + data: template variables; ``nginx_http2_directive`` is added (True when
      the installed nginx takes ``http2 on;``, and on a host with no nginx yet)

    The version is read when the operation runs, so on a fresh host the nginx
    installed earlier in the same run decides.

    .. code:: python

        nginx_template(
            name="Render the MCP site",
            src="templates/etc/nginx/sites-available/mcp-edge-site.conf.j2",
            dest="/etc/nginx/sites-available/mcp-edge-site.conf",
            domain="mcp.example.com",
        )
    """
    version = host.get_fact(NginxVersion)
    data["nginx_http2_directive"] = version is None or version >= HTTP2_DIRECTIVE_SINCE
    yield from files.template._inner(src=src, dest=dest, user=user, group=group, mode=mode,
                                     create_remote_dir=create_remote_dir, **data)


@operation()
def secret_file(dest, content, user="root", group="root", mode="600"):
    """
    Upload a file that holds secrets: like ``files.put``, but its content never
    appears in ``--diff`` output (only that it would change).

    + dest: remote path
    + content: the file's text
    + user/group/mode: ownership and permissions (0600 by default)

    .. code:: python

        secret_file(name="Bearer tokens (0600)", dest="/etc/nginx/snippets/mcp-edge/access-tokens.conf",
                    content=token_map)
    """
    # pyinfra's files.put prints whole files under --diff; config.DIFF is shared by
    # every host's greenlet, so it cannot be switched off for one upload: own upload.
    yield from _put_secret(SecretContent(content, None, ()), dest, user, group, mode, create_remote_dir=True)


@operation()
def certificate(cert_name, domains, email, webroot, server, ca_bundle=None):
    """
    Obtain a certificate with certbot's webroot plugin; do nothing when the
    lineage already exists for the same ACME server and domains with its files in
    place. Renewal is left to the distribution's certbot timer.

    + cert_name: certbot lineage name (``/etc/letsencrypt/live/<cert_name>``)
    + domains: list of names on the certificate
    + email: registration email
    + webroot: directory nginx serves ``/.well-known/acme-challenge/`` from
    + server: ACME directory URL
    + ca_bundle: remote PEM file to trust for the ACME server (private CAs)

    A lineage whose files were deleted is removed and issued again.

    .. code:: python

        certificate(
            name="Obtain the TLS certificate",
            cert_name="mcp.example.com",
            domains=["mcp.example.com"],
            email="ops@example.com",
            webroot="/var/www/mcp-edge-acme",
            server="https://acme-v02.api.letsencrypt.org/directory",
        )
    """
    domains = sorted(domains)
    current = host.get_fact(CertbotCertificate, cert_name=cert_name)
    if current and current["files_ok"] and current["server"] == server and current["domains"] == domains \
            and current["webroot"] == webroot:
        host.noop(f"certificate {cert_name} is in place for {', '.join(domains)}")
        return

    env = ["env", QuoteString(f"REQUESTS_CA_BUNDLE={ca_bundle}")] if ca_bundle else []
    if current and not current["files_ok"]:
        # certbot refuses to work on a lineage with missing live files
        yield StringCommand(*env, "certbot", "delete", "--non-interactive", "--cert-name", QuoteString(cert_name))
    args = [
        *env, "certbot", "certonly", "--webroot", "-w", QuoteString(webroot),
        "--cert-name", QuoteString(cert_name),
    ]
    for domain in domains:
        args += ["-d", QuoteString(domain)]
    args += [
        "--server", QuoteString(server), "--email", QuoteString(email), "--agree-tos",
        "--no-eff-email", "--non-interactive", "--expand", "--config-dir", LETSENCRYPT,
        # a new ACME server (say, staging -> production) needs a new certificate now
        "--force-renewal" if current and current["files_ok"] and current["server"] != server
        else "--keep-until-expiring",
    ]
    yield StringCommand(*args)


# --- Synology DSM / Docker ------------------------------------------------------------

def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@operation()
def docker_build(docker, image, context, dockerfile="Dockerfile", build_args=None, no_cache=False):
    """
    Build an image from a source directory on the host, only when the sources,
    the Dockerfile name or the build arguments changed (a digest of them is kept
    in the image's ``mcp-edge.build`` label).

    + docker: absolute path of the docker CLI
    + image: tag to build (``loop-api:mcp-edge``)
    + context: build context directory on the host
    + dockerfile: file name inside ``context``
    + build_args: dict of ``--build-arg`` values
    + no_cache: build without Docker's layer cache

    .. code:: python

        docker_build(name="Build loop-api", docker="/usr/local/bin/docker", image="loop-api:mcp-edge",
                     context="/volume1/docker/loop-api", build_args={"BASE_IMAGE": "python:3.11-slim"})
    """
    build_args = build_args or {}
    sources = host.get_fact(DirectoryDigest, path=context)
    if sources is None:
        raise OperationError(f"build context {context} is missing or empty on {host.name}")
    wanted = _digest(sources, dockerfile, build_args)
    current = host.get_fact(DockerImageLabel, docker=docker, image=image)
    if current and current["label"] == wanted and not no_cache:
        host.noop(f"image {image} is built from the current sources")
        return
    args = [QuoteString(docker), "build", "--quiet", "--tag", QuoteString(image),
            "--label", QuoteString(f"mcp-edge.build={wanted}"), "--file", QuoteString(f"{context}/{dockerfile}")]
    if no_cache:
        args.append("--no-cache")
    for key, value in sorted(build_args.items()):
        args += ["--build-arg", QuoteString(f"{key}={value}")]
    yield StringCommand(*args, QuoteString(context))


@operation()
def docker_container(docker, container, image, replace_script, ports=(), volumes=(), env_file=None,
                     env_digest="", restart="unless-stopped", labels=None, health_cmd=None, health_timeout=90,
                     command=None):
    """
    Run a container as specified; recreate it only when the image (ID) or the
    spec (ports, volumes, environment, restart policy, labels, health check,
    command) changed, comparing a spec digest kept in the ``mcp-edge.spec``
    label. A stopped container with the right spec is started again. A
    (re)created container must become healthy; otherwise the previous one is put
    back and the operation fails with the new one's last log lines
    (``replace_script`` does the swap on the host).

    + docker: absolute path of the docker CLI
    + container: container name
    + image: image tag; its ID is part of the spec
    + replace_script: the bundle's mcp-edge-container script on the host
    + ports/volumes: lists of ``-p`` / ``-v`` values
    + env_file: file on the host with the environment (0600; keeps values off process lists)
    + env_digest: digest of that file's content, so an environment change recreates
    + restart/labels/health_cmd/health_timeout/command: as docker run

    .. code:: python

        docker_container(name="loop-mcp container", docker=docker, container="loop-mcp",
                         image="loop-mcp:mcp-edge", replace_script="/volume1/mcp-edge/bin/mcp-edge-container",
                         ports=["127.0.0.1:8085:8085"], volumes=["/volume1/LOOP_CORE/vault/LOOP:/vault:ro"])
    """
    img = host.get_fact(DockerImageLabel, docker=docker, image=image)
    image_id = img["id"] if img else None
    spec = _digest(image_id, list(ports), list(volumes), env_digest, restart, labels or {}, health_cmd, command)
    current = host.get_fact(DockerContainerState, docker=docker, container=container)
    if current and current["spec"] == spec and current["status"] == "running":
        host.noop(f"container {container} runs the current spec")
        return
    action = "start" if current and current["spec"] == spec else "replace"
    args = [QuoteString(replace_script), action, QuoteString(container), str(int(health_timeout)), "--",
            "--label", QuoteString(f"mcp-edge.spec={spec}"), "--restart", QuoteString(restart)]
    for key, value in sorted((labels or {}).items()):
        args += ["--label", QuoteString(f"{key}={value}")]
    for port in ports:
        args += ["-p", QuoteString(port)]
    for volume in volumes:
        args += ["-v", QuoteString(volume)]
    if env_file:
        args += ["--env-file", QuoteString(env_file)]
    if health_cmd:
        args += ["--health-cmd", QuoteString(health_cmd), "--health-interval", "2s", "--health-retries", "3",
                 "--health-start-period", "5s"]
    args.append(QuoteString(image))
    if command:
        args += [QuoteString(c) for c in command]
    yield StringCommand(*args)


@operation()
def guard_sync(script):
    """
    Make DSM's nginx match the bundle's managed copies, through the on-NAS
    guard (the same script the NAS runs at boot and on schedule): nothing
    happens when every managed file is in place and every patched entry is
    patched; otherwise the guard restores them, validates with ``nginx -t``,
    reloads, and puts the previous files back if validation fails.

    + script: the guard script on the host

    .. code:: python

        guard_sync(name="DSM nginx in place", script="/volume1/mcp-edge/bin/mcp-edge-guard")
    """
    pending = host.get_fact(GuardStatus, script=script)
    if pending == []:
        host.noop("DSM nginx files are in place")
        return
    yield StringCommand(QuoteString(script), "apply")


@operation()
def dsm_scheduled_task(task, script, every_minutes):
    """
    A root Task Scheduler job on DSM that runs ``script`` every N minutes,
    registered through ``synowebapi`` (dsm.md §9: never /etc/crontab, which DSM
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
    A root boot-up triggered task on DSM (dsm.md §9: Task Scheduler, event
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


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _check_free_disk(paths, min_free):
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


def _check_ports(wanted, ours):
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
    _check_free_disk(disk_paths, min_free_disk)
    ports = _check_ports({p: "nginx" for p in nginx_ports}, lambda listener: listener["process"] == "nginx")
    host.noop(f"pre-flight passed (sudo, disk, {ports})")
    yield from ()  # checks only: never a command


DSM_PATH = "/usr/syno/bin:/usr/syno/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"


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
    # DSM's sudo PATH may lack nginx's directory: the guard's PATH (dsm.md §8).
    if host.get_fact(NginxVersion, _env={"PATH": DSM_PATH}) is None:
        raise OperationError(f"{host.name}: no nginx found: DSM's web server is what serves the MCP hostname")
    _check_free_disk([volume_path], min_free_disk)
    loop_ports = loop_ports or {}
    for port, container in loop_ports.items():
        anywhere = ("0.0.0.0", "::")
        others = [n for n, address in host.get_fact(DockerPublishedPorts, docker=docker).get(port, [])
                  if n not in (container, f"{container}.mcp-edge-previous")
                  and (address == publish_address or address in anywhere or publish_address in anywhere)]
        if others:
            raise OperationError(f"{host.name}: port {port} (for {container}) is already published by container "
                                 f"{', '.join(others)}; stop it or choose another host_port in the settings.")
    _check_ports({p: f"for {c}" for p, c in loop_ports.items()},
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

_REPO = Path(__file__).resolve().parents[1]
VERIFY_TOKEN_ENV = "MCP_EDGE_VERIFY_TOKEN"  # = mcpedge.verify.TOKEN_ENV (that module needs the MCP SDK)
_log = logging.getLogger("pyinfra")


def _verification_failed(state, host, message):
    host.log_styled(message, fg="red", log_func=_log.error)
    return False  # fails the operation, hence the host and the run


@operation(is_idempotent=True)
def verify_endpoint(url, ca_file=None, cert_min_days=0, timeout=10, token=None, allow_listed=False, attempts=2):
    """
    Check a public MCP endpoint from the control machine (``python -m mcpedge.verify``):
    TLS chain and expiry, /health, SSE and Streamable HTTP with the MCP SDK, events
    not held back by the proxy. Never a change: nothing happens in a dry run, and a
    passing check executes no command, so it stays out of change tables and drift checks.

    + url: the public https base URL
    + ca_file: local PEM file to trust (private CAs)
    + cert_min_days: fail when the certificate expires sooner
    + timeout: seconds per connection and MCP step
    + token: bearer token for a gated site; handed over in the environment, never argv
    + allow_listed: the site has an IP allow-list; if it refuses this machine the MCP
      checks are logged as skipped instead of failing
    + attempts: a failure is retried once after 2 s (an nginx reload finishes asynchronously)

    A failure fails the host with the check's name and the likely cause. In a drift
    check's dry run (its collector observes the run: ``mcpedge.pyinfra_compat.observer``)
    the endpoint is verified too and the outcome recorded for the report instead.
    """
    drift = None if state.is_executing else pyinfra_compat.observer("drift")
    in_drift_check = not state.is_executing  # a dry run: only the drift check verifies in one
    if in_drift_check and drift is None:
        host.noop(f"{url} is verified after the apply")
        return
    cmd = [sys.executable, "-m", "mcpedge.verify", url, "--cert-min-days", str(cert_min_days),
           "--timeout", str(timeout)]
    if ca_file:
        cmd += ["--ca-file", ca_file]
    if allow_listed:
        cmd.append("--allow-listed")
    env = {k: v for k, v in os.environ.items() if k != VERIFY_TOKEN_ENV}
    if token:
        env[VERIFY_TOKEN_ENV] = reveal(token)
    for attempt in range(attempts):
        if attempt:
            time.sleep(2)
        try:
            res = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True, timeout=timeout * 12)
        except subprocess.TimeoutExpired:
            message = f"verify {url}: no result within {timeout * 12:g} s"
            continue
        if res.returncode == 0:
            for line in res.stdout.splitlines():
                if line.startswith("SKIPPED"):
                    host.log_styled(f"verify {url}: {line}", fg="yellow", log_func=_log.warning)
                else:
                    host.log(f"verify {url}: {line}")
            message = None
            break
        message = f"verify {url}: {(res.stderr.strip().splitlines() or ['exit ' + str(res.returncode)])[-1]}"
    if in_drift_check:
        drift.record_verify(host.name, {"url": url, "ok": message is None, "error": message})
        host.noop(f"{url} verified" if message is None else message)
        return
    if message is not None:
        yield FunctionCommand(_verification_failed, (message,), {})


# --- Files holding secrets --------------------------------------------------------------


class SecretContent(StringIO):
    """Rendered content that holds secrets: its repr never shows them, and it
    carries the masked text (``masked``) that reports and diffs may show;
    ``masked=None``: the whole file is secret, no diff of it is ever shown."""

    def __init__(self, text: str, masked: str, names: tuple[str, ...]):
        super().__init__(text)
        self.masked = masked
        self.secret_names = names

    def __repr__(self) -> str:
        return "<secret content>"


def mask_env_text(text: str, names=(), secrets=()) -> str:
    """``text`` with the value of every ``NAME=`` line of ``names`` replaced by a
    digest marker (as :class:`~mcpedge.facts.MaskedEnvFile` does remotely), and
    any remaining occurrence of a secret value replaced by ``***``."""
    out = []
    prefixes = tuple(f"{n}=" for n in names)
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if prefixes and body.startswith(prefixes):
            digest = hashlib.sha256(body.encode()).hexdigest()[:12]
            line = f"{body.split('=', 1)[0]}=<masked sha256:{digest}>\n"
        out.append(line)
    masked = "".join(out)
    # longest first: a secret containing another is masked whole
    for value in sorted({reveal(s) for s in secrets if reveal(s)}, key=len, reverse=True):
        masked = masked.replace(value, "***")
    return masked


def masked_diff(before: str | None, after: str, path: str) -> list[str]:
    """A unified diff (with ---/+++ headers) of two masked texts."""
    return list(difflib.unified_diff(
        (before or "").splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=path if before is not None else "/dev/null", tofile=path, n=2,
    ))


def _put_secret(content: SecretContent, dest, user, group, mode, create_remote_dir=False):
    """Upload ``content`` unless the remote file has the same sha1, then fix
    mode/owner. ``--diff`` shows only ``content.masked`` (nothing when None)."""
    mode = file_utils.ensure_mode_int(mode)
    remote = host.get_fact(File, path=dest)
    if create_remote_dir and not remote:
        yield StringCommand("mkdir", "-p", QuoteString(os.path.dirname(dest)))
    text = content.getvalue()
    same = bool(remote) and host.get_fact(Sha1File, path=dest) == hashlib.sha1(text.encode()).hexdigest()
    if not same:
        if state.config.DIFF:
            verb = "modify" if remote else "create"
            if content.masked is None:
                host.log(f"Will {verb} {dest} (content not shown: it holds secrets)", logger.info)
            else:
                before = host.get_fact(MaskedEnvFile, path=dest, names=content.secret_names) if remote else None
                host.log(f"Will {verb} {dest} (secret values masked)", logger.info)
                for line in masked_diff(before, content.masked, dest):
                    logger.info("  %s", line.rstrip("\n"))
            logger.info("")
        yield FileUploadCommand(content, dest, remote_temp_filename=host.get_temp_filename(dest))
        yield file_utils.chown(dest, user, group)
        yield file_utils.chmod(dest, mode)
        return

    changed = False
    if remote["mode"] != mode:
        if state.config.DIFF:
            logger.info("mode %s -> %s", remote["mode"], mode)
        yield file_utils.chmod(dest, mode)
        changed = True
    if remote["user"] != user or remote["group"] != group:
        if state.config.DIFF:
            logger.info("chown %s:%s -> %s:%s", remote["user"], remote["group"], user, group)
        yield file_utils.chown(dest, user, group)
        changed = True
    if not changed:
        host.noop(f"file {dest} is up to date (secret content)")


@operation()
def secret_template(src, dest, user, group, mode, secret_names=(), secrets=(), create_remote_dir=False, **data):
    """
    Render a ``NAME=value`` file that holds secrets and upload it; ``--diff``
    shows only a masked diff.

    + src: local Jinja2 template (rendered like ``files.template``)
    + dest: remote path
    + user/group/mode: ownership and permissions of the file (give all three)
    + secret_names: names whose ``NAME=value`` lines are masked (on the host
      too: the remote file is masked before it is read)
    + secrets: secret values; any other occurrence is shown as ``***``
    + create_remote_dir: create the parent directory if missing
    + data: template variables

    The file is replaced when the rendered content's sha1 differs from the
    remote file's. The diff shows ``NAME=<masked sha256:...>`` (a digest of
    the whole line) in place of a secret line, so a changed secret is visible
    as a changed digest. Give this operation a ``name=``: without one pyinfra
    prints every argument, the secrets included.

    .. code:: python

        secret_template(
            name="Gateway environment file",
            src="templates/etc/mcp-edge/gateway.env.j2",
            dest="/etc/mcp-edge/gateway.env",
            user="mcp-gateway", group="mcp-gateway", mode="600",
            secret_names=["API_TOKEN"], secrets=[api_token],
            gw=gw,
        )
    """
    names = tuple(secret_names)
    if not hasattr(src, "read") and state.cwd:
        src = os.path.join(state.cwd, src)
    data.setdefault("host", host)
    data.setdefault("state", state)
    data.setdefault("inventory", state.inventory)
    text = get_template(src).render(data)
    content = SecretContent(text, mask_env_text(text, names, secrets), names)
    yield from _put_secret(content, dest, user, group, mode, create_remote_dir)
