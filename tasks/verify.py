"""Verification: after the host's changes, its public MCP endpoint works as a client sees it."""

from pyinfra import host
from pyinfra.api import deploy

from mcpedge.operations.verify import verify_endpoint


@deploy("Verify")
def verify_host():
    """Last step of each host's deploy (a host is in one group, so it runs once per host)."""
    settings = host.data.mcp_edge["verify"]
    if not settings["enabled"]:
        return
    url = f"https://{host.data.mcp_edge_host['domain']}"
    access = host.data.mcp_edge["nginx"]["access"]
    verify_endpoint(
        name=f"Verify {url} from this machine (TLS, health, SSE, Streamable HTTP, events not held)",
        url=url, ca_file=settings["ca_file"], cert_min_days=settings["cert_min_days"],
        timeout=settings["timeout"],
        token=(access["bearer_tokens"] or [None])[0], allow_listed=bool(access["allow"]),
    )
