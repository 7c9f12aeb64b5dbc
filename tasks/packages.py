"""System packages: nginx, certbot and Node.js (for Supergateway)."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

PACKAGES = ["ca-certificates", "nginx", "certbot", "nodejs", "npm"]
NODESOURCE_KEYRING = "/etc/apt/keyrings/nodesource.asc"


@deploy("Packages")
def install_packages():
    sg = host.data.mcp_edge["supergateway"]
    if sg["node_source"] == "nodesource":
        # Distribution Node too old for Supergateway 4.x: NodeSource's repository.
        files.directory(name="apt keyrings directory", path="/etc/apt/keyrings",
                        user="root", group="root", mode="755")
        files.download(name="NodeSource signing key", src="https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
                       dest=NODESOURCE_KEYRING, user="root", group="root", mode="644")
        apt.repo(name=f"NodeSource {sg['nodesource_major']}.x repository",
                 src=f"deb [signed-by={NODESOURCE_KEYRING}] https://deb.nodesource.com/node_{sg['nodesource_major']}.x nodistro main",
                 filename="nodesource")

    # Refresh the index only when something is to be installed: a converged
    # host must not report a change (and a drift check must stay quiet).
    installed = host.get_fact(DebPackages)
    if any(p not in installed for p in PACKAGES):
        apt.update(name="Refresh the apt index (packages to install)", cache_time=3600)
    apt.packages(name="Install nginx, certbot and Node.js", packages=PACKAGES, no_recommends=True)
