"""Ubuntu/Debian gateway hosts: the validated `ubuntu:` section of the settings."""

from mcpedge.settings import current as _current

mcp_edge = _current().group("ubuntu")
