"""mcp-edge: put MCP servers on the internet behind nginx, and keep them there.

The index of what each group of hosts gets; each task lives in tasks/<group>/.

    pyinfra inventory.py deploy.py --dry --diff   # preview
    pyinfra inventory.py deploy.py                # apply, then verify each host's endpoint
    python -m mcpedge.drift inventory.py          # drift check: exit 0 none, 2 drift, 1 error
"""

from pyinfra import host

from mcpedge import pyinfra_compat
from tasks.control.drift import configure_drift_control
from tasks.synology.containers import configure_containers
from tasks.synology.nginx import configure_nas_nginx
from tasks.ubuntu.certbot import configure_certbot
from tasks.ubuntu.gateway import configure_gateway
from tasks.ubuntu.nginx import configure_http, configure_site
from tasks.ubuntu.packages import install_packages
from tasks.ubuntu.preflight import ubuntu_host_ready
from tasks.verify import verify_host

pyinfra_compat.attach()  # observers the caller asked for (the drift check's collector)

# Pre-flight first: a host that cannot take the deploy is refused before any change.
if "ubuntu" in host.groups and ubuntu_host_ready():
    install_packages()
    configure_gateway()
    configure_http()      # http level + the ACME site, so certbot can validate
    certificate = configure_certbot()
    configure_site(reload_after=[certificate])  # the HTTPS MCP site, once its certificate exists
    verify_host()         # last: the public endpoint, checked from this machine

if "synology" in host.groups:
    configure_containers()   # loop-api and loop-mcp, each recreated only on its own change
    configure_nas_nginx()    # DSM's nginx: own server block, patched entries, the guard
    verify_host()            # last: the public endpoint, checked from this machine

if "control" in host.groups:
    configure_drift_control()  # timer + service: scheduled drift check and repair

pyinfra_compat.host_prepared()  # every operation of this host is planned: observers may look
