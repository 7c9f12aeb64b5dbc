"""What the shared MCP templates need, whatever the target: the ``site`` of every template.

The snippets under ``templates/etc/nginx/snippets/mcp-edge/`` and the
http-level ``conf.d/mcp-edge-http.conf`` are the same files on an Ubuntu host
and on the NAS; they read only this (``site.stream_timeout``,
``site.rate_limit.per_ip`` ...), each setting under one name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import reveal
from .paths import ACCESS_LOG, NGINX_SNIPPET_DIR, TOKEN_FILE


@dataclass(frozen=True)
class Access:
    """The MCP locations' gates. Token values stay out of templates: only whether the gate is on."""

    tokens: bool
    allow: list
    origins: list | None


@dataclass(frozen=True)
class Commit:
    """``commit``: mcp-edge-nginx-commit's config (validate the whole tree, reload, keep or
    restore the last-good files; files/README.md) and how it is called (``script config action``)."""

    script: str
    config: str
    manifest: str
    state_dir: str
    reload_commands: tuple
    nginx: str = "nginx"
    lock: str | None = None
    lock_wait: int | None = None
    path: str | None = None

    def command(self, action: str) -> str:
        return f"{self.script} {self.config} {action}"


@dataclass(frozen=True)
class McpSite:
    upstream: str  # the upstream block every MCP path goes to
    upstream_servers: list  # its `server` lines (unix:/... or host:port, IPv6 bracketed)
    stream_timeout: int  # seconds
    client_max_body_size: str
    rate_limit: dict
    metrics_allow: list
    hsts_max_age: int
    access: Access
    health_path: str = "/health"
    snippet_dir: str = NGINX_SNIPPET_DIR
    access_log: str = ACCESS_LOG
    token_file: str = TOKEN_FILE


def mcp_site(nginx: dict, upstream: str, upstream_servers: list[str], access_log: str = ACCESS_LOG) -> McpSite:
    """The site of a target from its validated ``nginx`` settings section."""
    access = nginx["access"]
    return McpSite(
        upstream=upstream, upstream_servers=upstream_servers, stream_timeout=nginx["stream_timeout"],
        client_max_body_size=nginx["client_max_body_size"], rate_limit=nginx["rate_limit"],
        metrics_allow=nginx["metrics_allow"], hsts_max_age=nginx["hsts_max_age"],
        access=Access(tokens=bool(access["bearer_tokens"]), allow=access["allow"], origins=access["allowed_origins"]),
        access_log=access_log,
    )


def token_map_content(tokens: list) -> str:
    """The bearer-token map (secret): $mcp_edge_token_ok is 1 for a listed token."""
    lines = ["# Managed by mcp-edge (0600 root: holds the bearer tokens; nginx's master reads it).",
             "map $http_authorization $mcp_edge_token_ok {", "    default 0;"]
    # Tokens are [A-Za-z0-9_-]{32,} (checked in the settings): nothing to escape.
    lines += [f'    "~^(?i:bearer) +{reveal(t)}$" 1;' for t in tokens]
    return "\n".join(lines + ["}", ""])
