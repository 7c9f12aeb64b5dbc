"""Docker images and containers, rebuilt and recreated only on a real change."""

from __future__ import annotations

import hashlib
import json

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from ..facts.docker import DirectoryDigest, DockerContainerState, DockerImageLabel


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
def docker_container(docker, container, image, replace_script, replace_config, ports=(), volumes=(), env_file=None,
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
    + replace_script: the bundle's mcp-edge-container program on the host
    + replace_config: its config (the docker CLI's path; files/README.md)
    + ports/volumes: lists of ``-p`` / ``-v`` values
    + env_file: file on the host with the environment (0600; keeps values off process lists)
    + env_digest: digest of that file's content, so an environment change recreates
    + restart/labels/health_cmd/health_timeout/command: as docker run

    .. code:: python

        docker_container(name="loop-mcp container", docker=docker, container="loop-mcp",
                         image="loop-mcp:mcp-edge", replace_script="/volume1/mcp-edge/bin/mcp-edge-container",
                         replace_config="/volume1/mcp-edge/container.conf",
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
    args = [QuoteString(replace_script), QuoteString(replace_config), action, QuoteString(container), str(int(health_timeout)), "--",
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
