"""Inventory from the settings file (MCP_EDGE_SETTINGS, default ./settings.yaml).

The whole file is validated here, before any host is contacted; a bad value
stops the run with a message naming the file, the key and what was expected.
Every pyinfra command loads an inventory first: the bundle's changes to pyinfra
(sudo through an askpass script, the fact cache) are installed here.
"""

from mcpedge import pyinfra_compat as _pyinfra_compat
from mcpedge.settings import inventory_or_exit as _inventory

_pyinfra_compat.install()
globals().update(_inventory())
