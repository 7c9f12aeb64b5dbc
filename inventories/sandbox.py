"""The local test bench's targets (written by `make sandbox`)."""

import os as _os

from mcpedge import pyinfra_compat as _pyinfra_compat
from mcpedge.settings import inventory_or_exit as _inventory

_pyinfra_compat.install()
globals().update(_inventory(_os.environ.get("MCP_EDGE_SANDBOX_SETTINGS", ".sandbox/settings.yaml")))
