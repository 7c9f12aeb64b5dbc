"""Synology NAS: loop-api and loop-mcp containers, built on the NAS from their sources.

loop-mcp is a container of its own so that deploying the API never drops an
MCP stream: each is rebuilt and recreated only when its own sources or spec change.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mcpedge.facts.dsm import docker_path
from mcpedge.model import for_host
from mcpedge.model.synology import CONTAINER_PROGRAM, SERVICES, env_content
from mcpedge.operations.docker import docker_build, docker_container
from mcpedge.operations.dsm import dsm_preflight
from mcpedge.operations.secrets import secret_file
from mcpedge.settings import size_bytes


@deploy("NAS containers")
def configure_containers():
    model = for_host(host)
    nas, docker = model.settings, docker_path(host.data.mcp_edge)
    dsm_preflight(name="NAS pre-flight: DSM 7, docker, nginx, free disk, loop ports, no conflicting reverse-proxy entry",
                  domain=model.domains[0], patch_entries=nas["patch_entries"],
                  min_free_disk=size_bytes(nas["preflight"]["min_free_disk"]), volume_path=model.bundle_dir,
                  loop_ports={nas[k]["host_port"]: nas[k]["name"] for k in SERVICES},
                  publish_address=nas["publish_address"],
                  docker=None if nas["docker"] == "auto" else nas["docker"])

    for path, mode in ((model.bundle_dir, "755"), (model.bin_dir, "755"), (model.env_dir, "700")):
        files.directory(name=f"Bundle directory {path}", path=path, user="root", group="root", mode=mode)
    # A static program (files/) and its config: the docker CLI it drives.
    files.put(name="Container start/replace program", src=CONTAINER_PROGRAM[1], dest=model.replace_script,
              user="root", group="root", mode="755", create_remote_dir=False)
    files.template(name="Container start/replace config", src="templates/volume1/mcp-edge/container.conf.j2",
                   dest=model.replace_conf, user="root", group="root", mode="644", create_remote_dir=False,
                   docker=docker)

    for key in SERVICES:
        c = nas[key]
        for volume in c["volumes"]:
            files.directory(name=f"{c['name']} volume {volume.split(':')[0]}", path=volume.split(":")[0],
                            user="root", group="root", mode="755")
        spec = model.container_spec(c, docker)
        # Content is uploaded, never printed: it may hold secrets (env:NAME values).
        secret_file(name=f"{c['name']} environment file (0600; content never shown)", dest=spec["env_file"],
                    content=env_content(c), user="root", group="root", mode="600")
        docker_build(name=f"Build {c['name']} image from {c['build_context']}", docker=docker, image=spec["image"],
                     context=c["build_context"], dockerfile=c["dockerfile"],
                     build_args={"BASE_IMAGE": c["base_image"]})
        docker_container(name=f"{c['name']} container (recreated only on a new image or spec)", **spec)
