"""Synology NAS: loop-api and loop-mcp containers, built on the NAS from their sources.

loop-mcp is a container of its own so that deploying the API never drops an
MCP stream: each is rebuilt and recreated only when its own sources or spec change.
"""

import hashlib

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mcpedge.context import synology_context
from mcpedge.facts import SynologyDocker
from mcpedge.operations import docker_build, docker_container, dsm_preflight


def docker_path(nas):
    return nas["docker"] if nas["docker"] != "auto" else host.get_fact(SynologyDocker)


def _env_content(env: dict) -> str:
    return "".join(f"{k}={v}\n" for k, v in sorted(env.items()))


@deploy("NAS containers")
def configure_containers():
    ctx = synology_context(host.data.mcp_edge, host.data.mcp_edge_host, docker_path(host.data.mcp_edge))
    nas, docker = ctx["nas"], ctx["docker"]
    dsm_preflight(name="NAS pre-flight: DSM 7, docker, no conflicting reverse-proxy entry",
                  domain=ctx["domains"][0], patch_entries=nas["patch_entries"])

    for path, mode in ((ctx["bundle_dir"], "755"), (ctx["bin_dir"], "755"), (ctx["env_dir"], "700")):
        files.directory(name=f"Bundle directory {path}", path=path, user="root", group="root", mode=mode)
    files.template(name="Container start/replace script", src="templates/volume1/mcp-edge/bin/mcp-edge-container.j2",
                   dest=ctx["replace_script"], user="root", group="root", mode="755", docker=docker)

    for key in ("loop_api", "loop_mcp"):
        c = nas[key]
        for volume in c["volumes"]:
            files.directory(name=f"{c['name']} volume {volume.split(':')[0]}", path=volume.split(":")[0],
                            user="root", group="root", mode="755")
        env = _env_content(c["environment"])
        env_file = f"{ctx['env_dir']}/{c['name']}.env"
        # Content is uploaded, never printed: it may hold secrets (env:NAME values).
        files.put(name=f"{c['name']} environment file (0600)", src=_StringIO(env), dest=env_file,
                  user="root", group="root", mode="600")
        image = f"{c['name']}:mcp-edge"
        docker_build(name=f"Build {c['name']} image from {c['build_context']}", docker=docker, image=image,
                     context=c["build_context"], dockerfile=c["dockerfile"],
                     build_args={"BASE_IMAGE": c["base_image"]})
        health = ("python3 -c \"import sys,urllib.request; "
                  f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{c['container_port']}{c['health_path']}',"
                  " timeout=3).status != 200)\"")
        docker_container(
            name=f"{c['name']} container (recreated only on a new image or spec)",
            docker=docker, container=c["name"], image=image, replace_script=ctx["replace_script"],
            ports=[f"{nas['publish_address']}:{c['host_port']}:{c['container_port']}"],
            volumes=c["volumes"], env_file=env_file, env_digest=hashlib.sha256(env.encode()).hexdigest(),
            restart=c["restart"], labels={"mcp-edge.service": c["name"]}, health_cmd=health,
            health_timeout=c["health_timeout"],
        )


def _StringIO(text):
    from io import StringIO
    return StringIO(text)
