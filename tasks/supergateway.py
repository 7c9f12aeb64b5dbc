"""Supergateway under a hardened, templated systemd unit (one instance per transport)."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mcpedge.context import CONFIG_DIR, GATEWAY_PRELOAD, GATEWAY_UNIT, ubuntu_context
from mcpedge.operations import npm_global, secret_template
from mcpedge.settings import Secret


@deploy("Supergateway")
def configure_gateway():
    ctx = ubuntu_context(host.data.mcp_edge, host.data.mcp_edge_host)
    gw = ctx["gw"]
    user = gw["user"]

    server.group(name="Gateway service group", group=user, system=True)
    server.user(
        name="Gateway service user (no login, no home)",
        user=user, group=user, system=True, shell="/usr/sbin/nologin",
        home=gw["working_directory"], create_home=False,
    )
    files.directory(name="Gateway working directory", path=gw["working_directory"],
                    user=user, group=user, mode="750")
    files.directory(name="mcp-edge config directory", path=CONFIG_DIR, user="root", group="root", mode="755")
    files.directory(name="mcp-edge library directory", path="/usr/local/lib/mcp-edge",
                    user="root", group="root", mode="755")

    # Installed once, pinned; never `npx -y` at service start.
    package = npm_global(name=f"Install Supergateway {gw['version']}", package="supergateway", version=gw["version"])
    # create_remote_dir=False: the directories come from the operations above,
    # and `--dry --diff` shows a new file's diff only when no mkdir comes first.
    preload = files.template(
        name="Loopback-bind preload for Supergateway",
        src="templates/usr/local/lib/mcp-edge/listen-loopback.cjs.j2", dest=GATEWAY_PRELOAD,
        user="root", group="root", mode="644", create_remote_dir=False, bind_address="127.0.0.1",
    )
    # Secret values (`env:NAME` settings) never reach a diff, the log or --json.
    secrets = {k: v for k, v in host.data.mcp_edge["supergateway"]["environment"].items() if isinstance(v, Secret)}
    shared_env = secret_template(
        name="Gateway environment file (0600, may hold secrets)",
        src="templates/etc/mcp-edge/gateway.env.j2", dest=f"{CONFIG_DIR}/gateway.env",
        user=user, group=user, mode="600", secret_names=sorted(secrets), secrets=list(secrets.values()), gw=gw,
    )
    unit = files.template(
        name="Gateway systemd unit",
        src=f"templates/etc/systemd/system/{GATEWAY_UNIT}.j2", dest=f"/etc/systemd/system/{GATEWAY_UNIT}",
        user="root", group="root", mode="644", gw=gw,
    )
    instance_envs = {
        i.name: files.template(
            name=f"Gateway instance {i.name} settings",
            src="templates/etc/mcp-edge/gateway-instance.env.j2", dest=i.env_file,
            user=user, group=user, mode="600", create_remote_dir=False, instance=i,
        )
        for i in gw["instances"]
    }

    # Instances no longer in the settings: stop them and drop their settings.
    wanted = {i.env_file for i in gw["instances"]}
    for path in host.get_fact(FindFiles, path=CONFIG_DIR, fname="gateway-*.env", maxdepth=1):
        if path not in wanted:
            name = path.rsplit("/gateway-", 1)[1][: -len(".env")]
            systemd.service(name=f"Stop removed gateway instance {name}",
                            service=f"mcp-edge-gateway@{name}.service", running=False, enabled=False)
            files.file(name=f"Remove settings of gateway instance {name}", path=path, present=False)

    systemd.daemon_reload(name="Reload systemd units (unit changed)", _if=unit.did_change)
    for i in gw["instances"]:
        systemd.service(
            name=f"Restart gateway {i.name} (its code or settings changed)", service=i.unit, restarted=True,
            _if=any_changed(package, preload, shared_env, unit, instance_envs[i.name]),
        )
        systemd.service(name=f"Gateway {i.name} running and enabled", service=i.unit, running=True, enabled=True)
