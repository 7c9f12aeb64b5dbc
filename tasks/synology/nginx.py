"""Synology NAS: DSM's nginx serves the MCP hostname with the bundle's own server
block (the same MCP templates as the Ubuntu host), optionally patches DSM
reverse-proxy entries for streaming, and an on-NAS guard keeps it all in place
across DSM regenerations (boot, UI save, update)."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mcpedge.context import TOKEN_FILE, synology_context, token_map_content
from mcpedge.facts.dsm import docker_path
from mcpedge.operations.dsm import dsm_boot_task, dsm_scheduled_task, guard_sync
from mcpedge.operations.secrets import secret_file


@deploy("NAS nginx and guard")
def configure_nas_nginx():
    ctx = synology_context(host.data.mcp_edge, host.data.mcp_edge_host, docker_path(host.data.mcp_edge))
    managed = ctx["managed_dir"]
    files.directory(name="Guard: managed copies directory", path=managed, user="root", group="root", mode="755")
    files.directory(name="Guard: backups directory", path=f"{ctx['bundle_dir']}/backups",
                    user="root", group="root", mode="700")
    for live, template in ctx["nginx_files"].items():
        # Rendered onto the volume; the guard installs them into DSM's nginx
        # (so the deploy and the guard converge to the same files).
        files.template(name=f"Managed copy of {live}", src=template, dest=f"{managed}{live}",
                       user="root", group="root", mode="644", nginx_http2_directive=True, **ctx)
    secret_file(name="Managed copy of the nginx bearer tokens (0600 root; content never shown)",
                dest=f"{managed}{TOKEN_FILE}", content=token_map_content(ctx["nginx"]["access"]["bearer_tokens"]))
    files.template(name="DSM reverse-proxy patcher (patch mode)", src="templates/volume1/mcp-edge/bin/mcp-edge-dsm-patch.j2",
                   dest=f"{ctx['bin_dir']}/mcp-edge-dsm-patch", user="root", group="root", mode="755", **ctx)
    files.template(name="On-NAS guard script", src="templates/volume1/mcp-edge/bin/mcp-edge-guard.j2",
                   dest=ctx["guard"], user="root", group="root", mode="755", **ctx)

    guard_sync(name="DSM nginx files in place (validated, reloaded, rolled back on failure)", script=ctx["guard"])
    dsm_boot_task(name="Guard runs at boot (DSM boot-up task)", task="mcp-edge guard (boot)",
                  script=f"{ctx['guard']} apply")
    dsm_scheduled_task(name=f"Guard runs every {ctx['guard_interval_min']} min (DSM Task Scheduler)",
                       task="mcp-edge guard", script=f"{ctx['guard']} apply",
                       every_minutes=ctx["guard_interval_min"])
