"""Synology NAS hosts: the validated `synology:` section of the settings (once supported)."""

from mcpedge.settings import GROUP_SCHEMAS as _GROUP_SCHEMAS, current as _current

mcp_edge = _current().group("synology") if "synology" in _GROUP_SCHEMAS else {}
