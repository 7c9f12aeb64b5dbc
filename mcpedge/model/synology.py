"""The model of a Synology NAS: DSM's nginx in front of the loop-api and loop-mcp containers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..escape import host_port
from ..facts.dsm import DSM_PATH
from ..settings import reveal
from .paths import DSM_REVERSE_PROXY_CONF, MCP_SNIPPETS, NGINX_SNIPPET_DIR, TOKEN_FILE
from .site import Commit, McpSite, mcp_site

DSM_ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"
HTTP_FILE = "/etc/nginx/conf.d/http.mcp-edge-http.conf"
SITE_FILE = "/etc/nginx/conf.d/http.mcp-edge-site.conf"
SERVICES = ("loop_api", "loop_mcp")
NAMESPACE = ("/etc/nginx/conf.d/http.mcp-edge-*.conf", f"{NGINX_SNIPPET_DIR}/*")
# The programs the NAS gets in <bundle>/bin (files/README.md), from files/ in this repository.
PROGRAMS = {"mcp-edge-guard": "files/volume1/mcp-edge/bin/mcp-edge-guard",
            "mcp-edge-dsm-patch": "files/volume1/mcp-edge/bin/mcp-edge-dsm-patch",
            "mcp-edge-nginx-commit": "files/usr/local/lib/mcp-edge/mcp-edge-nginx-commit"}
CONTAINER_PROGRAM = ("mcp-edge-container", "files/volume1/mcp-edge/bin/mcp-edge-container")


def env_content(service: dict) -> str:
    """The env file of a NAS service container (may hold secrets: uploaded, never printed)."""
    # Docker's --env-file takes NAME=value lines verbatim (no quoting): values hold
    # no newline or control character (refused in the settings), so each is one line.
    return "".join(f"{k}={reveal(v)}\n" for k, v in sorted(service["environment"].items()))


@dataclass(frozen=True)
class NasHost:
    domains: list
    settings: dict  # the validated synology section (publish_address, patch_entries, loop_api, loop_mcp ...)
    site: McpSite
    api_upstream: str
    bundle_dir: str
    tokens: list

    @property
    def bin_dir(self) -> str:
        return f"{self.bundle_dir}/bin"

    @property
    def env_dir(self) -> str:
        return f"{self.bundle_dir}/env"

    @property
    def managed_dir(self) -> str:
        return f"{self.bundle_dir}/managed"

    @property
    def guard(self) -> str:
        return f"{self.bundle_dir}/bin/mcp-edge-guard"

    @property
    def guard_conf(self) -> str:
        return f"{self.bundle_dir}/guard.conf"

    @property
    def replace_script(self) -> str:
        return f"{self.bundle_dir}/bin/mcp-edge-container"

    @property
    def replace_conf(self) -> str:
        return f"{self.bundle_dir}/container.conf"

    @property
    def commit(self) -> Commit:
        """The same validate-reload-restore program as on an Ubuntu host, with DSM's reloads."""
        return Commit(script=f"{self.bin_dir}/mcp-edge-nginx-commit", config=f"{self.bundle_dir}/nginx-commit.conf",
                      manifest=f"{self.bundle_dir}/nginx-managed.list", state_dir=f"{self.bundle_dir}/state/nginx",
                      reload_commands=("/usr/syno/bin/synosystemctl reload nginx", "systemctl reload nginx",
                                       "nginx -s reload"),
                      path=DSM_PATH)  # no lock of its own: the guard's lock serialises every NAS commit

    @property
    def guard_config(self) -> dict:
        """``guard`` in guard.conf.j2 (files/README.md)."""
        return {"bundle_dir": self.bundle_dir, "managed_dir": self.managed_dir, "namespace": list(NAMESPACE),
                "reverse_proxy_conf": DSM_REVERSE_PROXY_CONF, "patch_entries": self.settings["patch_entries"],
                "stream_timeout": self.site.stream_timeout, "patcher": f"{self.bin_dir}/mcp-edge-dsm-patch",
                "commit": self.commit.script, "commit_config": self.commit.config,
                "lock": "/run/lock/mcp-edge-guard.lock"}

    @property
    def managed_live_paths(self) -> list[str]:
        """Every live file the guard may touch (the commit's manifest: what a failure restores)."""
        paths = [*self.nginx_files, TOKEN_FILE]
        return paths + ([DSM_REVERSE_PROXY_CONF] if self.settings["patch_entries"] else [])

    @property
    def verify(self) -> dict:
        return self.settings["verify"]

    @property
    def guard_interval_min(self) -> int:
        return max(1, self.settings["guard_interval"] // 60)

    @property
    def nginx_files(self) -> dict:
        """Live path -> template: rendered into managed_dir, installed into DSM's nginx by the guard."""
        return {
            HTTP_FILE: "templates/etc/nginx/conf.d/mcp-edge-http.conf.j2",
            SITE_FILE: "templates/etc/nginx/conf.d/http.mcp-edge-site.conf.j2",
            **{f"{NGINX_SNIPPET_DIR}/{name}": f"templates/etc/nginx/snippets/mcp-edge/{name}.j2"
               for name in MCP_SNIPPETS},
        }

    def template(self) -> dict:
        """Variables for the NAS templates (the shared MCP ones read ``site``)."""
        return {"domains": self.domains, "nas": self.settings, "site": self.site, "api_upstream": self.api_upstream,
                "commit": self.commit, "guard": self.guard_config}

    def container_spec(self, service: dict, docker: str) -> dict:
        """``docker_container`` arguments for one service (``service``: loop_api or loop_mcp settings)."""
        health = ("python3 -c \"import sys,urllib.request; "
                  f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{service['container_port']}"
                  f"{service['health_path']}', timeout=3).status != 200)\"")
        return {
            "docker": docker, "container": service["name"], "image": f"{service['name']}:mcp-edge",
            "replace_script": self.replace_script, "replace_config": self.replace_conf,
            "ports": [f"{host_port(self.settings['publish_address'], service['host_port'])}:{service['container_port']}"],
            "volumes": service["volumes"], "env_file": f"{self.env_dir}/{service['name']}.env",
            "env_digest": hashlib.sha256(env_content(service).encode()).hexdigest(), "restart": service["restart"],
            "labels": {"mcp-edge.service": service["name"]}, "health_cmd": health,
            "health_timeout": service["health_timeout"],
        }


def nas_host(nas: dict, host_info: dict) -> NasHost:
    mcp_upstream = host_port(nas["upstream_host"], nas["loop_mcp"]["host_port"])
    return NasHost(
        domains=[host_info["domain"]], settings=nas,
        site=mcp_site(nas["nginx"], "mcp_edge_mcp", [mcp_upstream], access_log=DSM_ACCESS_LOG),
        api_upstream=host_port(nas["upstream_host"], nas["loop_api"]["host_port"]),
        bundle_dir=nas["bundle_dir"], tokens=nas["nginx"]["access"]["bearer_tokens"],
    )
