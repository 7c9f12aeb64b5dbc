"""Synology NAS: DSM's nginx serves the MCP hostname with the bundle's own server
block (the same MCP templates as the Ubuntu host), optionally patches DSM
reverse-proxy entries for streaming, and an on-NAS guard keeps it all in place
across DSM regenerations (boot, UI save, update)."""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mcpedge.model import for_host
from mcpedge.model.paths import TOKEN_FILE
from mcpedge.model.site import token_map_content
from mcpedge.model.synology import PROGRAMS
from mcpedge.operations.dsm import dsm_boot_task, dsm_scheduled_task, guard_sync
from mcpedge.operations.secrets import secret_file


@deploy("NAS nginx and guard")
def configure_nas_nginx():
    model = for_host(host)
    ctx = model.template()
    managed = model.managed_dir
    files.directory(name="Guard: managed copies directory", path=managed, user="root", group="root", mode="755")
    for path in (f"{model.bundle_dir}/state", model.commit.state_dir):
        files.directory(name=f"Guard: last-good snapshot directory {path}", path=path,
                        user="root", group="root", mode="700")
    files.directory(name="Remove the timestamped backups of an older guard", path=f"{model.bundle_dir}/backups",
                    present=False)
    for live, template in model.nginx_files.items():
        # Rendered onto the volume; the guard installs them into DSM's nginx
        # (so the deploy and the guard converge to the same files).
        files.template(name=f"Managed copy of {live}", src=template, dest=f"{managed}{live}",
                       user="root", group="root", mode="644", nginx_http2_directive=True, **ctx)
    secret_file(name="Managed copy of the nginx bearer tokens (0600 root; content never shown)",
                dest=f"{managed}{TOKEN_FILE}", content=token_map_content(model.tokens))
    # Static programs (files/), each reading a small rendered config (files/README.md).
    for name, src in PROGRAMS.items():
        files.put(name=f"NAS program {name}", src=src, dest=f"{model.bin_dir}/{name}",
                  user="root", group="root", mode="755", create_remote_dir=False)
    files.template(name="Guard config", src="templates/volume1/mcp-edge/guard.conf.j2", dest=model.guard_conf,
                   user="root", group="root", mode="644", create_remote_dir=False, **ctx)
    files.template(name="nginx validate-and-reload config", src="templates/etc/mcp-edge/nginx-commit.conf.j2",
                   dest=model.commit.config, user="root", group="root", mode="644", create_remote_dir=False, **ctx)
    files.put(name="List of DSM nginx files the guard manages", src=StringIO("\n".join(model.managed_live_paths) + "\n"),
              dest=model.commit.manifest, user="root", group="root", mode="644", create_remote_dir=False)

    guard = f"{model.guard} {model.guard_conf} apply"
    guard_sync(name="DSM nginx files in place (validated, reloaded, rolled back on failure)", script=model.guard,
               config=model.guard_conf)
    dsm_boot_task(name="Guard runs at boot (DSM boot-up task)", task="mcp-edge guard (boot)", script=guard)
    dsm_scheduled_task(name=f"Guard runs every {model.guard_interval_min} min (DSM Task Scheduler)",
                       task="mcp-edge guard", script=guard, every_minutes=model.guard_interval_min)
