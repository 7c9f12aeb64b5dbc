"""Verification: after the host's changes, its public MCP endpoint works as a client sees it."""

from pyinfra import host
from pyinfra.api import deploy

from mcpedge.model import for_host
from mcpedge.operations.verify import verify_endpoint


@deploy("Verify")
def verify_host():
    """Last step of each host's deploy (a host is in one group, so it runs once per host)."""
    model = for_host(host)
    settings = model.verify
    if not settings["enabled"]:
        return
    url = f"https://{model.domains[0]}"
    verify_endpoint(
        name=f"Verify {url} from this machine (TLS, health, SSE, Streamable HTTP, events not held)",
        url=url, ca_file=settings["ca_file"], cert_min_days=settings["cert_min_days"],
        timeout=settings["timeout"],
        token=(model.tokens or [None])[0], allow_listed=bool(model.site.access.allow),
    )
