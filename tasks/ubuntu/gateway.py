"""mcp-edge-gateway: the stdio MCP server behind a hardened, socket-activated unit.

One child process per MCP session (legacy SSE and Streamable HTTP alike), so
no user ever sees another's messages; sessions capped per client and in total,
memory and tasks bounded by the unit (README: "Sessions and isolation").
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mcpedge.model import for_host
from mcpedge.model.paths import CONFIG_DIR, GATEWAY_DIR, LIB_DIR, SERVERS_DIR
from mcpedge.operations.secrets import secret_template

# What the Supergateway-based releases installed: removed when found.
LEGACY_UNIT = "/etc/systemd/system/mcp-edge-gateway@.service"
LEGACY_FILES = (LEGACY_UNIT, f"{LIB_DIR}/listen-loopback.cjs", f"{CONFIG_DIR}/gateway.env",
                f"{LIB_DIR}/mcp_edge_gateway.py")  # the single-file gateway, before it was a package
# The gateway's modules (files/usr/local/lib/mcp-edge/mcp_edge_gateway/), uploaded as they are.
GATEWAY_MODULES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / f"files{GATEWAY_DIR}").glob("*.py"))


@deploy("MCP gateway")
def configure_gateway():
    model = for_host(host)
    ctx, gw = model.template(), model.gw
    srv = gw.server
    user = gw.user

    server.group(name="Gateway service group", group=user, system=True)
    server.user(
        name="Gateway service user (no login, no home)",
        user=user, group=user, system=True, shell="/usr/sbin/nologin",
        home=gw.working_directory, create_home=False,
    )
    files.directory(name="Gateway working directory", path=gw.working_directory,
                    user=user, group=user, mode="750")
    files.directory(name="mcp-edge config directory", path=CONFIG_DIR, user="root", group="root", mode="755")
    files.directory(name="MCP server configs directory", path=SERVERS_DIR, user="root", group="root", mode="755")
    files.directory(name="mcp-edge library directory", path=LIB_DIR, user="root", group="root", mode="755")

    # A static program (files/, unit-tested); only its config is rendered.
    files.directory(name="mcp-edge-gateway package directory", path=GATEWAY_DIR, user="root", group="root",
                    mode="755")
    program = [files.put(name=f"mcp-edge-gateway {module}", src=f"files{GATEWAY_DIR}/{module}",
                         dest=f"{GATEWAY_DIR}/{module}", user="root", group="root", mode="644",
                         create_remote_dir=False) for module in GATEWAY_MODULES]
    config = files.put(name=f"Gateway config of {srv.name} (sessions, command; no secrets)",
                       src=StringIO(gw.config_text), dest=srv.config_file,
                       user=user, group=user, mode="600", create_remote_dir=False)
    # Secret values (`env:NAME` settings) never reach a diff, the log or --json.
    env = secret_template(
        name=f"Environment of {srv.name} (0600, may hold secrets)",
        src="templates/etc/mcp-edge/gateway.env.j2", dest=srv.env_file,
        user=user, group=user, mode="600", secret_names=gw.secret_names, secrets=gw.secrets, **ctx,
    )
    socket_unit = files.template(name=f"Gateway socket unit of {srv.name}",
                                 src="templates/etc/systemd/system/mcp-edge-gateway.socket.j2",
                                 dest=f"/etc/systemd/system/{srv.socket_unit}", user="root", group="root",
                                 mode="644", **ctx)
    unit = files.template(name=f"Gateway service unit of {srv.name}",
                          src="templates/etc/systemd/system/mcp-edge-gateway.service.j2",
                          dest=f"/etc/systemd/system/{srv.unit}", user="root", group="root", mode="644", **ctx)
    legacy = _remove_legacy_gateway()

    systemd.daemon_reload(name="Reload systemd units (gateway units changed)",
                          _if=any_changed(socket_unit, unit, *legacy))
    systemd.service(name=f"Gateway socket of {srv.name} listening and enabled", service=srv.socket_unit,
                    running=True, enabled=True)
    # A changed socket unit takes effect only when the socket is re-created.
    systemd.service(name=f"Re-create the gateway socket of {srv.name} (its unit changed)",
                    service=srv.socket_unit, restarted=True, _if=socket_unit.did_change)
    systemd.service(name=f"Restart gateway {srv.name} (its program, config or unit changed)", service=srv.unit,
                    restarted=True, _if=any_changed(*program, config, env, unit))
    systemd.service(name=f"Gateway {srv.name} running and enabled", service=srv.unit, running=True, enabled=True)


def _remove_legacy_gateway():
    """Supergateway instances (mcp-edge-gateway@sse, @http-N) left by an older release."""
    ops = []
    for path in host.get_fact(FindFiles, path=CONFIG_DIR, fname="gateway-*.env", maxdepth=1) or []:
        name = path.rsplit("/gateway-", 1)[1][: -len(".env")]
        ops.append(systemd.service(name=f"Stop the old Supergateway instance {name}",
                                   service=f"mcp-edge-gateway@{name}.service", running=False, enabled=False))
        ops.append(files.file(name=f"Remove settings of the old Supergateway instance {name}", path=path,
                              present=False))
    for path in LEGACY_FILES:
        ops.append(files.file(name=f"Remove {path} (Supergateway release)", path=path, present=False))
    return ops
