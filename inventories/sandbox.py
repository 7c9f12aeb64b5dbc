"""The local test bench's targets (written by `make sandbox`)."""

import os as _os

from mcpedge.settings import inventory_or_exit as _inventory

globals().update(_inventory(_os.environ.get("MCP_EDGE_SANDBOX_SETTINGS", ".sandbox/settings.yaml")))
