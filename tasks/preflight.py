"""Pre-flight: refuse, clearly and before anything changes, a host that cannot take the deploy."""

from pyinfra import host
from pyinfra.api import deploy

from mcpedge.context import gateway_instances
from mcpedge.facts import SudoUser
from mcpedge.operations import ubuntu_preflight
from mcpedge.settings import min_node_major, size_bytes


@deploy("Pre-flight")
def ubuntu_host_ready() -> bool:
    """Checks the Ubuntu host; returns False when sudo does not work, so the
    caller prepares nothing else (every later fact would fail less clearly)."""
    edge = host.data.mcp_edge
    sg, pf = edge["supergateway"], edge["preflight"]
    ubuntu_preflight(
        name="Pre-flight: sudo, free disk, ports 80/443 and the gateway's, Node.js version",
        min_free_disk=size_bytes(pf["min_free_disk"]), disk_paths=pf["disk_paths"],
        gateway_ports=[i.port for i in gateway_instances(sg)],
        node_major=min_node_major(sg["version"]), node_source=sg["node_source"],
    )
    return host.get_fact(SudoUser, _ignore_errors=True) == "root"
