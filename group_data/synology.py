"""Synology NAS hosts: the validated `synology:` section of the settings."""

from mcpedge.settings import current as _current

mcp_edge = _current().group("synology")
