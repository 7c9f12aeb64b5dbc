"""Remote paths and template context, computed from validated settings.

Pure functions: the tasks pass ``host.data`` in, the templates get plain dicts
out. The ``mcp`` part is what the shared MCP templates (http level, locations,
stream proxy settings) need, on every target.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .escape import host_port, systemd_env_value  # noqa: F401 (systemd_env_value: used by callers)
from .settings import Secret, reveal, size_bytes

# Remote paths owned by the bundle.
CONFIG_DIR = "/etc/mcp-edge"
STATE_DIR = "/var/lib/mcp-edge"
NGINX_SNIPPET_DIR = "/etc/nginx/snippets/mcp-edge"
NGINX_MANIFEST = f"{CONFIG_DIR}/nginx-managed.list"
NGINX_COMMIT = "/usr/local/sbin/mcp-edge-nginx-commit"
ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"
LIB_DIR = "/usr/local/lib/mcp-edge"
GATEWAY_PROGRAM = f"{LIB_DIR}/mcp_edge_gateway.py"
GATEWAY_USER = "mcp-gateway"
SERVERS_DIR = f"{CONFIG_DIR}/servers"
SOCKET_DIR = "/run/mcp-edge"
NGINX_USER = "www-data"  # Debian's nginx workers: the only ones that may open the gateway sockets
ACME_CA_REMOTE = f"{CONFIG_DIR}/acme-ca.pem"
CERTBOT_DROPIN = "/etc/systemd/system/certbot.service.d/mcp-edge.conf"
CERTBOT_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mcp-edge-reload-nginx"

# The shared MCP snippets: (template under templates/, file name on the host).
MCP_SNIPPETS = ("proxy-stream.conf", "mcp-locations.conf", "json-errors.conf",
                "security-headers.conf", "tls.conf", "mcp-access.conf")
# nginx `map` of the bearer tokens (settings nginx.access.bearer_tokens): written
# 0600 root (nginx's master reads it), never from a template or into a diff.
TOKEN_FILE = f"{NGINX_SNIPPET_DIR}/access-tokens.conf"


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


def gateway_config_text(gw: dict, server: GatewayServer) -> str:
    return json.dumps(gateway_config(gw, server), indent=2, sort_keys=True) + "\n"


def env_file_lines(environment: dict) -> list[str]:
    """``NAME=<JSON string>`` lines (the gateway's env file): any value is one safe line."""
    return [f"{k}={json.dumps(reveal(v))}" for k, v in sorted(environment.items())]


def secret_values(environment: dict) -> tuple[list[str], list[str]]:
    """(names, revealed values) of the secret (``env:NAME``) entries of an environment."""
    names = sorted(k for k, v in environment.items() if isinstance(v, Secret))
    return names, [reveal(environment[k]) for k in names]


def mcp_context(nginx: dict, upstream: str, upstream_servers: list[str], health_path: str = "/health") -> dict:
    """What the shared MCP templates need, whatever the target. ``upstream``
    serves every MCP path of the site (Streamable HTTP and legacy SSE)."""
    return {
        "snippet_dir": NGINX_SNIPPET_DIR,
        "access_log": ACCESS_LOG,
        "upstream": upstream,
        "upstream_servers": upstream_servers,
        "health_path": health_path,
        "stream_timeout": nginx["stream_timeout"],
        "rate_limit": nginx["rate_limit"],
        "metrics_allow": nginx["metrics_allow"],
        "hsts_max_age": nginx["hsts_max_age"],
        # Token values stay out of the template context: only whether the gate is on.
        "access": {"tokens": bool(nginx["access"]["bearer_tokens"]), "allow": nginx["access"]["allow"],
                   "origins": nginx["access"]["allowed_origins"]},
        "token_file": TOKEN_FILE,
    }


def token_map_content(tokens: list[str]) -> str:
    """The bearer-token map (secret): $mcp_edge_token_ok is 1 for a listed token."""
    lines = ["# Managed by mcp-edge (0600 root: holds the bearer tokens; nginx's master reads it).",
             "map $http_authorization $mcp_edge_token_ok {", "    default 0;"]
    # Tokens are [A-Za-z0-9_-]{32,} (checked in the settings): nothing to escape.
    lines += [f'    "~^(?i:bearer) +{reveal(t)}$" 1;' for t in tokens]
    return "\n".join(lines + ["}", ""])


def commit_context(reload_commands: list[str], nginx_bin: str = "nginx") -> dict:
    return {
        "manifest": NGINX_MANIFEST,
        "state_dir": f"{STATE_DIR}/nginx",
        "script": NGINX_COMMIT,
        "nginx": nginx_bin,
        "reload_commands": reload_commands,
    }


def ubuntu_context(edge: dict, host_info: dict) -> dict:
    """Template context for an Ubuntu/Debian gateway host."""
    gw = edge["gateway"]
    nginx = edge["nginx"]
    server = DEFAULT_SERVER
    domain = host_info["domain"]
    names, values = secret_values(gw["environment"])
    return {
        "domains": [domain],
        "cert_name": domain,
        "names_hash_bucket": max(64, 1 << (len(domain) + 8).bit_length()),
        "nginx": nginx,
        "acme": edge["acme"],
        "acme_ca_remote": ACME_CA_REMOTE,
        "mcp": mcp_context(nginx, server.upstream, [f"unix:{server.socket}"]),
        "gw": {
            "user": GATEWAY_USER,
            "group": GATEWAY_USER,
            "socket_group": NGINX_USER,
            "program": GATEWAY_PROGRAM,
            "server": server,
            "working_directory": gw["working_directory"],
            "memory_max": size_bytes(gw["memory_max"]),
            "tasks_max": gw["tasks_max"],
            "config_text": gateway_config_text(gw, server),
            "env_lines": env_file_lines(gw["environment"]),
            "secret_names": names,
            "secrets": values,
        },
        "commit": commit_context(["systemctl reload nginx", "systemctl start nginx"]),
    }


# --- Synology NAS -------------------------------------------------------------------

DSM_REVERSE_PROXY_CONF = "/etc/nginx/sites-enabled/server.ReverseProxy.conf"
DSM_ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"


def synology_context(nas: dict, host_info: dict, docker: str | None) -> dict:
    """Template context for a Synology NAS (DSM's nginx in front of loop-api and loop-mcp)."""
    bundle = nas["bundle_dir"]
    mcp_upstream = host_port(nas["upstream_host"], nas["loop_mcp"]["host_port"])
    http_file = "/etc/nginx/conf.d/http.mcp-edge-http.conf"
    site_file = "/etc/nginx/conf.d/http.mcp-edge-site.conf"
    nginx = nas["nginx"]
    return {
        "domains": [host_info["domain"]],
        "nas": nas,
        "nginx": nginx,
        "docker": docker,
        "bundle_dir": bundle,
        "bin_dir": f"{bundle}/bin",
        "env_dir": f"{bundle}/env",
        "managed_dir": f"{bundle}/managed",
        "guard": f"{bundle}/bin/mcp-edge-guard",
        "replace_script": f"{bundle}/bin/mcp-edge-container",
        "reverse_proxy_conf": DSM_REVERSE_PROXY_CONF,
        "patch_entries": nas["patch_entries"],
        "stream_timeout": nginx["stream_timeout"],
        "guard_interval_min": max(1, nas["guard_interval"] // 60),
        # live path -> template (rendered into managed_dir, installed by the guard)
        "nginx_files": {
            http_file: "templates/etc/nginx/conf.d/mcp-edge-http.conf.j2",
            site_file: "templates/etc/nginx/conf.d/http.mcp-edge-site.conf.j2",
            **{f"{NGINX_SNIPPET_DIR}/{name}": f"templates/etc/nginx/snippets/mcp-edge/{name}.j2"
               for name in MCP_SNIPPETS},
        },
        "namespace": ["/etc/nginx/conf.d/http.mcp-edge-*.conf", f"{NGINX_SNIPPET_DIR}/*"],
        "api_upstream": host_port(nas["upstream_host"], nas["loop_api"]["host_port"]),
        "mcp": {**mcp_context(nginx, "mcp_edge_mcp", [mcp_upstream]), "access_log": DSM_ACCESS_LOG},
    }


def nas_env_content(c: dict) -> str:
    """The env file of a NAS service container (may hold secrets: uploaded, never printed)."""
    # Docker's --env-file takes NAME=value lines verbatim (no quoting): values hold
    # no newline or control character (refused in the settings), so each is one line.
    return "".join(f"{k}={reveal(v)}\n" for k, v in sorted(c["environment"].items()))


def nas_container_spec(ctx: dict, c: dict) -> dict:
    """``docker_container`` arguments for one NAS service (``c``: loop_api or loop_mcp settings)."""
    health = ("python3 -c \"import sys,urllib.request; "
              f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{c['container_port']}{c['health_path']}',"
              " timeout=3).status != 200)\"")
    return {
        "docker": ctx["docker"], "container": c["name"], "image": f"{c['name']}:mcp-edge",
        "replace_script": ctx["replace_script"],
        "ports": [f"{host_port(ctx['nas']['publish_address'], c['host_port'])}:{c['container_port']}"],
        "volumes": c["volumes"], "env_file": f"{ctx['env_dir']}/{c['name']}.env",
        "env_digest": hashlib.sha256(nas_env_content(c).encode()).hexdigest(), "restart": c["restart"],
        "labels": {"mcp-edge.service": c["name"]}, "health_cmd": health, "health_timeout": c["health_timeout"],
    }
