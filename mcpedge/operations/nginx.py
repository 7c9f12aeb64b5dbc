"""nginx files rendered for the installed nginx version."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.operations import files

from ..facts.nginx import NginxVersion

HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


@operation()
def nginx_template(src, dest, user="root", group="root", mode="644", create_remote_dir=True, **data):
    """
    Render an nginx template that may depend on the installed nginx version.

    + src: local Jinja2 template
    + dest: remote path
    + user/group/mode: ownership and permissions of the file
    + create_remote_dir: create the parent directory if missing (False where an
      earlier operation or package creates it, so ``--dry --diff`` shows the
      file's diff on a fresh host)
    + data: template variables; ``nginx_http2_directive`` is added (True when
      the installed nginx takes ``http2 on;``, and on a host with no nginx yet)

    The version is read when the operation runs, so on a fresh host the nginx
    installed earlier in the same run decides.

    .. code:: python

        nginx_template(
            name="Render the MCP site",
            src="templates/etc/nginx/sites-available/mcp-edge-site.conf.j2",
            dest="/etc/nginx/sites-available/mcp-edge-site.conf",
            domain="mcp.example.com",
        )
    """
    version = host.get_fact(NginxVersion)
    data["nginx_http2_directive"] = version is None or version >= HTTP2_DIRECTIVE_SINCE
    yield from files.template._inner(src=src, dest=dest, user=user, group=group, mode=mode,
                                     create_remote_dir=create_remote_dir, **data)
