"""Verification: after the host's changes, its public MCP endpoint works as a client sees it."""

from pyinfra import host, state
from pyinfra.api import deploy

from mcpedge.operations import verify_endpoint

# (run, host) pairs that already have the check: it is added once per host and
# run, whatever calls this (pyinfra's _run_once would check one host only).
_added: set = set()


@deploy("Verify")
def verify_host():
    settings = host.data.mcp_edge["verify"]
    key = (id(state), host.name)
    if not settings["enabled"] or key in _added:
        return
    _added.add(key)
    url = f"https://{host.data.mcp_edge_host['domain']}"
    access = host.data.mcp_edge["nginx"]["access"]
    verify_endpoint(
        name=f"Verify {url} from this machine (TLS, health, SSE, Streamable HTTP, events not held)",
        url=url, ca_file=settings["ca_file"], cert_min_days=settings["cert_min_days"],
        timeout=settings["timeout"],
        token=(access["bearer_tokens"] or [None])[0], allow_listed=bool(access["allow"]),
    )
