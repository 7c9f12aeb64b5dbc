"""Remote paths and template context, computed from validated settings.

Pure functions: the tasks pass ``host.data`` in, the templates get plain dicts
out. The ``mcp`` part is what the shared MCP templates (http level, locations,
stream proxy settings) need, on every target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Remote paths owned by the bundle.
CONFIG_DIR = "/etc/mcp-edge"
STATE_DIR = "/var/lib/mcp-edge"
NGINX_SNIPPET_DIR = "/etc/nginx/snippets/mcp-edge"
NGINX_MANIFEST = f"{CONFIG_DIR}/nginx-managed.list"
NGINX_COMMIT = "/usr/local/sbin/mcp-edge-nginx-commit"
ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"
GATEWAY_BIN = "/usr/local/bin/supergateway"
GATEWAY_PRELOAD = "/usr/local/lib/mcp-edge/listen-loopback.cjs"
GATEWAY_UNIT = "mcp-edge-gateway@.service"
GATEWAY_USER = "mcp-gateway"
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
class GatewayInstance:
    name: str        # systemd instance: sse, http-1, http-2, ...
    transport: str   # Supergateway --outputTransport
    port: int
    args: str        # extra Supergateway arguments

    @property
    def unit(self) -> str:
        return f"mcp-edge-gateway@{self.name}.service"

    @property
    def env_file(self) -> str:
        return f"{CONFIG_DIR}/gateway-{self.name}.env"


def systemd_env_value(value: str) -> str:
    """Quote a value for a systemd EnvironmentFile (double quotes, escapes)."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def gateway_instances(sg: dict) -> list[GatewayInstance]:
    timeout_ms = sg["session_timeout"] * 1000
    out = [GatewayInstance("sse", "sse", sg["sse_port"], "--ssePath /sse --messagePath /message")]
    for n in range(sg["http_instances"]):
        out.append(GatewayInstance(
            f"http-{n + 1}", "streamableHttp", sg["http_port"] + n,
            f"--streamableHttpPath /mcp --stateful --sessionTimeout {timeout_ms}",
        ))
    return out


def mcp_context(nginx: dict, sse_servers: list[str], http_servers: list[str]) -> dict:
    """What the shared MCP templates need, whatever the target."""
    return {
        "snippet_dir": NGINX_SNIPPET_DIR,
        "access_log": ACCESS_LOG,
        "sse_servers": sse_servers,
        "http_servers": http_servers,
        "health_upstream": "mcp_edge_http",
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
    lines += [f'    "~^(?i:bearer) +{t}$" 1;' for t in tokens]
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
    sg = edge["supergateway"]
    nginx = edge["nginx"]
    instances = gateway_instances(sg)
    env_lines = [f"MCP_STDIO_COMMAND={systemd_env_value(sg['stdio_command'])}",
                 f"MCP_LOG_LEVEL={sg['log_level']}"]
    env_lines += [f"{k}={systemd_env_value(v)}" for k, v in sorted(sg["environment"].items())]
    domain = host_info["domain"]
    return {
        "domains": [domain],
        "cert_name": domain,
        "nginx": nginx,
        "acme": edge["acme"],
        "acme_ca_remote": ACME_CA_REMOTE,
        "mcp": mcp_context(
            nginx,
            sse_servers=[f"127.0.0.1:{i.port}" for i in instances if i.transport == "sse"],
            http_servers=[f"127.0.0.1:{i.port}" for i in instances if i.transport != "sse"],
        ),
        "gw": {
            "user": GATEWAY_USER,
            "bin": GATEWAY_BIN,
            "preload": GATEWAY_PRELOAD,
            "env_dir": CONFIG_DIR,
            "working_directory": sg["working_directory"],
            "version": sg["version"],
            "env_lines": env_lines,
            "instances": instances,
        },
        "commit": commit_context(["systemctl reload nginx", "systemctl start nginx"]),
    }


# --- Synology NAS -------------------------------------------------------------------

DSM_REVERSE_PROXY_CONF = "/etc/nginx/sites-enabled/server.ReverseProxy.conf"
DSM_ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"


def synology_context(nas: dict, host_info: dict, docker: str | None) -> dict:
    """Template context for a Synology NAS (DSM's nginx in front of loop-api and loop-mcp)."""
    bundle = nas["bundle_dir"]
    mcp_upstream = f"{nas['upstream_host']}:{nas['loop_mcp']['host_port']}"
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
        "mcp": {**mcp_context(nginx, sse_servers=[mcp_upstream], http_servers=[mcp_upstream]),
                "access_log": DSM_ACCESS_LOG},
    }


def nas_env_content(c: dict) -> str:
    """The env file of a NAS service container (may hold secrets: uploaded, never printed)."""
    return "".join(f"{k}={v}\n" for k, v in sorted(c["environment"].items()))


def nas_container_spec(ctx: dict, c: dict) -> dict:
    """``docker_container`` arguments for one NAS service (``c``: loop_api or loop_mcp settings)."""
    health = ("python3 -c \"import sys,urllib.request; "
              f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{c['container_port']}{c['health_path']}',"
              " timeout=3).status != 200)\"")
    return {
        "docker": ctx["docker"], "container": c["name"], "image": f"{c['name']}:mcp-edge",
        "replace_script": ctx["replace_script"],
        "ports": [f"{ctx['nas']['publish_address']}:{c['host_port']}:{c['container_port']}"],
        "volumes": c["volumes"], "env_file": f"{ctx['env_dir']}/{c['name']}.env",
        "env_digest": hashlib.sha256(nas_env_content(c).encode()).hexdigest(), "restart": c["restart"],
        "labels": {"mcp-edge.service": c["name"]}, "health_cmd": health, "health_timeout": c["health_timeout"],
    }
