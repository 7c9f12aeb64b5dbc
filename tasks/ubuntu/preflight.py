"""Pre-flight: refuse, clearly and before anything changes, a host that cannot take the deploy."""

from pyinfra import host
from pyinfra.api import deploy

from mcpedge.facts.preflight import SudoUser
from mcpedge.model import for_host
from mcpedge.operations.preflight import ubuntu_preflight
from mcpedge.settings import size_bytes


@deploy("Pre-flight")
def ubuntu_host_ready() -> bool:
    """Checks the Ubuntu host; returns False when sudo does not work, so the
    caller prepares nothing else (every later fact would fail less clearly)."""
    pf = for_host(host).preflight
    ubuntu_preflight(
        name="Pre-flight: sudo, free disk, ports 80/443",
        min_free_disk=size_bytes(pf["min_free_disk"]), disk_paths=pf["disk_paths"],
    )
    return host.get_fact(SudoUser, _ignore_errors=True) == "root"
