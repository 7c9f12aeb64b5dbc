"""Day-to-day NAS operations for loop-api and loop-mcp, as pyinfra commands.

    pyinfra inventory.py --limit synology --sudo fact mcpedge.facts.NasStatus
    pyinfra inventory.py --limit synology --sudo fact mcpedge.facts.NasLogs service=loop-mcp lines=100
    pyinfra inventory.py --limit synology mcpedge.nas.restart service=loop-api
    pyinfra inventory.py --limit synology mcpedge.nas.stop service=loop-api
    pyinfra inventory.py --limit synology mcpedge.nas.rebuild service=loop-api

The sudo password comes from the settings' source (environment or a file), never
the command line. `stop` lasts until the next apply or drift repair starts the
container again. `rebuild` rebuilds the image without the build cache and
replaces the container (health-checked, previous one kept on failure).
"""

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from .facts.dsm import docker_path
from .model import for_host
from .operations.docker import docker_build, docker_container


def _service(service):
    nas = host.data.mcp_edge
    for key in ("loop_api", "loop_mcp"):
        if nas[key]["name"] == service or key == service.replace("-", "_"):
            return nas, nas[key]
    raise OperationError(f"unknown service {service!r}: expected {nas['loop_api']['name']} or {nas['loop_mcp']['name']}")


@operation(is_idempotent=False)
def restart(service):
    """Restart one NAS service container (``service=loop-api``)."""
    nas, c = _service(service)
    yield StringCommand(QuoteString(docker_path(nas)), "restart", QuoteString(c["name"]))


@operation(is_idempotent=False)
def stop(service):
    """Stop one NAS service container until the next apply (``service=loop-api``)."""
    nas, c = _service(service)
    yield StringCommand(QuoteString(docker_path(nas)), "stop", QuoteString(c["name"]))


@operation(is_idempotent=False)
def rebuild(service):
    """Rebuild a service's image from its sources without the build cache, then
    replace its container exactly as the deploy would (``service=loop-api``)."""
    nas, c = _service(service)
    docker = docker_path(nas)
    image = f"{c['name']}:mcp-edge"
    yield StringCommand(QuoteString(docker), "image", "rm", "-f", QuoteString(image))
    yield from docker_build._inner(docker=docker, image=image, context=c["build_context"],
                                   dockerfile=c["dockerfile"], build_args={"BASE_IMAGE": c["base_image"]},
                                   no_cache=True)
    yield StringCommand(QuoteString(docker), "rm", "-f", QuoteString(c["name"]))
    yield from docker_container._inner(**for_host(host).container_spec(c, docker))
