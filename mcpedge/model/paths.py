"""Remote paths the bundle owns, on every target (each in one place)."""

CONFIG_DIR = "/etc/mcp-edge"
STATE_DIR = "/var/lib/mcp-edge"
LIB_DIR = "/usr/local/lib/mcp-edge"
NGINX_SNIPPET_DIR = "/etc/nginx/snippets/mcp-edge"
ACCESS_LOG = "/var/log/nginx/mcp-edge-access.json"
# nginx `map` of the bearer tokens (settings nginx.access.bearer_tokens): written
# 0600 root (nginx's master reads it), never from a template or into a diff.
TOKEN_FILE = f"{NGINX_SNIPPET_DIR}/access-tokens.conf"
# The shared MCP snippets (templates/etc/nginx/snippets/mcp-edge/<name>.j2), on both targets.
MCP_SNIPPETS = ("proxy-stream.conf", "mcp-locations.conf", "json-errors.conf",
                "security-headers.conf", "tls.conf", "mcp-access.conf")

# Ubuntu hosts
NGINX_MANIFEST = f"{CONFIG_DIR}/nginx-managed.list"
NGINX_COMMIT = f"{LIB_DIR}/mcp-edge-nginx-commit"  # files/usr/local/lib/mcp-edge/ (both targets)
NGINX_COMMIT_CONF = f"{CONFIG_DIR}/nginx-commit.conf"
LEGACY_NGINX_COMMIT = "/usr/local/sbin/mcp-edge-nginx-commit"  # where releases before the static program had it
GATEWAY_PACKAGE = "mcp_edge_gateway"  # files/usr/local/lib/mcp-edge/mcp_edge_gateway/, run as python3 -m
GATEWAY_DIR = f"{LIB_DIR}/{GATEWAY_PACKAGE}"
GATEWAY_USER = "mcp-gateway"
SERVERS_DIR = f"{CONFIG_DIR}/servers"
SOCKET_DIR = "/run/mcp-edge"
NGINX_USER = "www-data"  # Debian's nginx workers: the only ones that may open the gateway sockets
ACME_CA_REMOTE = f"{CONFIG_DIR}/acme-ca.pem"
CERTBOT_DROPIN = "/etc/systemd/system/certbot.service.d/mcp-edge.conf"
CERTBOT_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mcp-edge-reload-nginx"

# Synology NAS (DSM renders this file from its rule store: docs/dsm.md §1)
DSM_REVERSE_PROXY_CONF = "/etc/nginx/sites-enabled/server.ReverseProxy.conf"

# Control hosts
DRIFT_UNIT = "mcp-edge-drift"
DRIFT_LOCK = "/run/lock/mcp-edge-drift.lock"
