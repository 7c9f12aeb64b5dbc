"""Inventory from the settings file (MCP_EDGE_SETTINGS, default ./settings.yaml).

The whole file is validated here, before any host is contacted; a bad value
stops the run with a message naming the file, the key and what was expected.
"""

from mcpedge.settings import inventory_or_exit as _inventory

globals().update(_inventory())
