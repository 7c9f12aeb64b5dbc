"""The bundle's pyinfra facts, one module per domain (as pyinfra's own ``pyinfra.facts``):

- :mod:`.nginx` (its version), :mod:`.certbot` (a certificate lineage),
  :mod:`.docker` (images, containers, build contexts, published ports),
  :mod:`.dsm` (Synology DSM: version, reverse-proxy rules, scheduled tasks, the
  guard, the docker CLI; the operators' NasStatus and NasLogs),
  :mod:`.preflight` (sudo, free disk, listening ports), :mod:`.secrets` (files
  holding secrets, read masked).

Each fact is read-only and cheap; none needs anything the deploy installs
except where ``requires_command`` says so (it then returns its default on a
fresh host). The operators' facts are also reachable as ``mcpedge.facts.X``:

    pyinfra inventory.py --limit synology --sudo fact mcpedge.facts.NasStatus
"""

from .dsm import NasLogs, NasStatus

__all__ = ["NasLogs", "NasStatus"]
