"""The local test bench's targets (written by `make sandbox`)."""

import os as _os

from mcpedge.settings import use as _use

globals().update(_use(_os.environ.get("MCP_EDGE_SANDBOX_SETTINGS", ".sandbox/settings.yaml")).inventory())
