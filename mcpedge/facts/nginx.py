"""nginx on the host: its version (what syntax the templates may use)."""

from __future__ import annotations

import re

from pyinfra.api import FactBase


class NginxVersion(FactBase):
    """
    The installed nginx version as a tuple of ints, e.g. ``(1, 26, 3)``; ``None``
    when nginx is not installed.

    .. code:: python

        host.get_fact(NginxVersion)
    """

    stable = True  # once installed, it stays for the run (mcpedge.pyinfra_compat.fact_cache)

    @staticmethod
    def default():
        return None

    def requires_command(self):
        return "nginx"

    def command(self):
        return "nginx -v 2>&1"

    def process(self, output):
        for line in output:
            m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", line)
            if m:
                return tuple(int(x) for x in m.groups())
        return None
