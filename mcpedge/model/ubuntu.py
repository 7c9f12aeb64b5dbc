"""The model of an Ubuntu/Debian gateway host: what its tasks and templates use, built once."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..settings import Secret, reveal, size_bytes
from .paths import (
    ACME_CA_REMOTE,
    GATEWAY_PACKAGE,
    GATEWAY_USER,
    LIB_DIR,
    NGINX_COMMIT,
    NGINX_COMMIT_CONF,
    NGINX_MANIFEST,
    NGINX_USER,
    SERVERS_DIR,
    SOCKET_DIR,
    STATE_DIR,
)
from .site import Commit, McpSite, mcp_site


@dataclass(frozen=True)
class GatewayServer:
    """One stdio MCP server behind mcp-edge-gateway: its units, socket and files."""

    name: str

    @property
    def unit(self) -> str:
        return f"mcp-edge-gateway-{self.name}.service"

    @property
    def socket_unit(self) -> str:
        return f"mcp-edge-gateway-{self.name}.socket"

    @property
    def socket(self) -> str:
        return f"{SOCKET_DIR}/gateway-{self.name}.sock"

    @property
    def config_file(self) -> str:
        return f"{SERVERS_DIR}/{self.name}.json"

    @property
    def env_file(self) -> str:
        return f"{SERVERS_DIR}/{self.name}.env"

    @property
    def upstream(self) -> str:
        return f"mcp_edge_{self.name.replace('-', '_')}"


# Today an Ubuntu host serves one stdio server (the settings' ubuntu.gateway).
DEFAULT_SERVER = GatewayServer("default")


def gateway_config(gw: dict, server: GatewayServer, base_path: str = "") -> dict:
    """mcp-edge-gateway's JSON config (no secrets: those go to the env file)."""
    s = gw["sessions"]
    return {
        "name": server.name,
        "command": gw["command"],
        "env_file": server.env_file,
        "working_directory": gw["working_directory"],
        "base_path": base_path,
        "sessions": {"max_total": s["max_total"], "max_per_client": s["max_per_client"],
                     "idle_timeout": s["idle_timeout"], "evict_min_idle": s["evict_min_idle"]},
        "keepalive_interval": gw["keepalive_interval"],
        "max_message_bytes": 8 << 20,
        "client_header": "X-MCP-Edge-Client",
        "bind_sessions_to_client": False,
        "log_level": gw["log_level"],
    }


def env_file_lines(environment: dict) -> list[str]:
    """``NAME=<JSON string>`` lines (the gateway's env file): any value is one safe line."""
    return [f"{k}={json.dumps(reveal(v))}" for k, v in sorted(environment.items())]


@dataclass(frozen=True)
class Gateway:
    """``gw`` in the gateway's unit, socket and env-file templates."""

    server: GatewayServer
    working_directory: str
    memory_max: int  # bytes
    tasks_max: int
    config_text: str
    env_lines: list
    secret_names: list  # names of the env entries that are secrets (masked in diffs)
    secrets: list  # their values, revealed: only for the secret_template operation's masking
    user: str = GATEWAY_USER
    group: str = GATEWAY_USER
    socket_group: str = NGINX_USER
    package: str = GATEWAY_PACKAGE


UBUNTU_COMMIT = Commit(
    script=NGINX_COMMIT, config=NGINX_COMMIT_CONF, manifest=NGINX_MANIFEST, state_dir=f"{STATE_DIR}/nginx",
    reload_commands=("systemctl reload nginx", "systemctl start nginx"),
    lock="/run/lock/mcp-edge-nginx-commit.lock",  # a deploy's commit and certbot's deploy hook may overlap
    path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)


@dataclass(frozen=True)
class UbuntuHost:
    domains: list
    cert_name: str
    names_hash_bucket: int  # room in nginx's server-name hash for the longest name
    nginx: dict  # workers: worker_processes, worker_rlimit_nofile, worker_connections (and the MCP keys)
    acme: dict
    site: McpSite
    gw: Gateway
    tokens: list  # bearer tokens (Secrets) for the token map
    preflight: dict
    node: dict
    verify: dict
    commit: Commit = UBUNTU_COMMIT
    acme_ca_remote: str = ACME_CA_REMOTE

    def template(self) -> dict:
        """Variables for the Ubuntu templates."""
        return {"domains": self.domains, "cert_name": self.cert_name, "names_hash_bucket": self.names_hash_bucket,
                "nginx": self.nginx, "acme": self.acme, "acme_ca_remote": self.acme_ca_remote, "site": self.site,
                "gw": self.gw, "commit": self.commit, "lib_dir": LIB_DIR}


def ubuntu_host(edge: dict, host_info: dict) -> UbuntuHost:
    gw, nginx, server = edge["gateway"], edge["nginx"], DEFAULT_SERVER
    domain = host_info["domain"]
    names = sorted(k for k, v in gw["environment"].items() if isinstance(v, Secret))
    return UbuntuHost(
        domains=[domain], cert_name=domain, names_hash_bucket=max(64, 1 << (len(domain) + 8).bit_length()),
        nginx=nginx, acme=edge["acme"], site=mcp_site(nginx, server.upstream, [f"unix:{server.socket}"]),
        gw=Gateway(server=server, working_directory=gw["working_directory"], memory_max=size_bytes(gw["memory_max"]),
                   tasks_max=gw["tasks_max"],
                   config_text=json.dumps(gateway_config(gw, server), indent=2, sort_keys=True) + "\n",
                   env_lines=env_file_lines(gw["environment"]), secret_names=names,
                   secrets=[reveal(gw["environment"][k]) for k in names]),
        tokens=nginx["access"]["bearer_tokens"], preflight=edge["preflight"], node=edge["node"],
        verify=edge["verify"],
    )
