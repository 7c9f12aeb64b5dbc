"""Synology NAS: loop-api and loop-mcp containers, built on the NAS from their sources.

loop-mcp is a container of its own so that deploying the API never drops an
MCP stream: each is rebuilt and recreated only when its own sources or spec change.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mcpedge.context import nas_container_spec, nas_env_content, synology_context
from mcpedge.facts.dsm import docker_path
from mcpedge.operations.docker import docker_build, docker_container
from mcpedge.operations.dsm import dsm_preflight
from mcpedge.operations.secrets import secret_file
from mcpedge.settings import size_bytes


@deploy("NAS containers")
def configure_containers():
    ctx = synology_context(host.data.mcp_edge, host.data.mcp_edge_host, docker_path(host.data.mcp_edge))
    nas, docker = ctx["nas"], ctx["docker"]
    dsm_preflight(name="NAS pre-flight: DSM 7, docker, nginx, free disk, loop ports, no conflicting reverse-proxy entry",
                  domain=ctx["domains"][0], patch_entries=nas["patch_entries"],
                  min_free_disk=size_bytes(nas["preflight"]["min_free_disk"]), volume_path=ctx["bundle_dir"],
                  loop_ports={nas[k]["host_port"]: nas[k]["name"] for k in ("loop_api", "loop_mcp")},
                  publish_address=nas["publish_address"],
                  docker=None if nas["docker"] == "auto" else nas["docker"])

    for path, mode in ((ctx["bundle_dir"], "755"), (ctx["bin_dir"], "755"), (ctx["env_dir"], "700")):
        files.directory(name=f"Bundle directory {path}", path=path, user="root", group="root", mode=mode)
    files.template(name="Container start/replace script", src="templates/volume1/mcp-edge/bin/mcp-edge-container.j2",
                   dest=ctx["replace_script"], user="root", group="root", mode="755", docker=docker)

    for key in ("loop_api", "loop_mcp"):
        c = nas[key]
        for volume in c["volumes"]:
            files.directory(name=f"{c['name']} volume {volume.split(':')[0]}", path=volume.split(":")[0],
                            user="root", group="root", mode="755")
        spec = nas_container_spec(ctx, c)
        # Content is uploaded, never printed: it may hold secrets (env:NAME values).
        secret_file(name=f"{c['name']} environment file (0600; content never shown)", dest=spec["env_file"],
                    content=nas_env_content(c), user="root", group="root", mode="600")
        docker_build(name=f"Build {c['name']} image from {c['build_context']}", docker=docker, image=spec["image"],
                     context=c["build_context"], dockerfile=c["dockerfile"],
                     build_args={"BASE_IMAGE": c["base_image"]})
        docker_container(name=f"{c['name']} container (recreated only on a new image or spec)", **spec)
