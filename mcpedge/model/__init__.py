"""The per-host model: every value a host's tasks and templates use, built once.

``for_host(host)`` turns the host's validated settings (``host.data.mcp_edge``,
``host.data.mcp_edge_host``) into one model per group: :class:`.ubuntu.UbuntuHost`,
:class:`.synology.NasHost` or :class:`.control.ControlHost`. Tasks read it and hand
templates named values (``site.stream_timeout``, ``gw.memory_max`` ...); the
shared MCP templates read only ``site`` (:mod:`.site`). Pure: no fact is read here.
"""

from __future__ import annotations

from .control import control_host
from .synology import nas_host
from .ubuntu import ubuntu_host

_BUILDERS = {"ubuntu": lambda edge, info: ubuntu_host(edge, info),
             "synology": lambda edge, info: nas_host(edge, info),
             "control": lambda edge, info: control_host(edge)}
_KEY = "_mcp_edge_model"


def for_host(host):
    """The model of ``host`` (pyinfra's), built on first use and kept on the host object."""
    from pyinfra.context import ContextObject

    if isinstance(host, ContextObject):  # `from pyinfra import host` is a proxy shared by every host
        host = host._get_module()
    model = host.__dict__.get(_KEY)
    if model is None:
        group = host.data.mcp_edge_host["group"]
        model = host.__dict__[_KEY] = _BUILDERS[group](host.data.mcp_edge, host.data.mcp_edge_host)
    return model
