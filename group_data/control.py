"""Control hosts (drift check and repair timer): the validated `control:` section of the settings."""

from mcpedge.settings import current as _current

mcp_edge = _current().group("control")
