"""System packages: nginx, certbot, the gateway's Python (aiohttp), Node.js (for npm MCP servers)."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

from mcpedge.model import for_host

# python3-aiohttp: mcp-edge-gateway's HTTP server (Debian's, kept by Debian's security team).
PACKAGES = ["ca-certificates", "nginx", "certbot", "python3", "python3-aiohttp", "nodejs", "npm"]
NODESOURCE_KEYRING = "/etc/apt/keyrings/nodesource.asc"


@deploy("Packages")
def install_packages():
    node = for_host(host).node
    if node["source"] == "nodesource":
        # The distribution's Node is too old for the operator's servers: NodeSource's repository.
        files.directory(name="apt keyrings directory", path="/etc/apt/keyrings",
                        user="root", group="root", mode="755")
        files.download(name="NodeSource signing key", src="https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
                       dest=NODESOURCE_KEYRING, user="root", group="root", mode="644")
        apt.repo(name=f"NodeSource {node['nodesource_major']}.x repository",
                 src=f"deb [signed-by={NODESOURCE_KEYRING}] https://deb.nodesource.com/node_{node['nodesource_major']}.x nodistro main",
                 filename="nodesource")

    # Refresh the index only when something is to be installed: a converged
    # host must not report a change (and a drift check must stay quiet).
    installed = host.get_fact(DebPackages)
    if any(p not in installed for p in PACKAGES):
        apt.update(name="Refresh the apt index (packages to install)", cache_time=3600)
    apt.packages(name="Install nginx, certbot, Python (aiohttp) and Node.js", packages=PACKAGES, no_recommends=True)
