"""nginx: main and http-level config, shared MCP snippets, the ACME and MCP sites.

Every managed file is listed in a manifest; after any change the whole tree is
validated (`nginx -t`) and reloaded by mcp-edge-nginx-commit, which puts the
last-good files back when validation fails.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mcpedge.model import for_host
from mcpedge.model.paths import (
    LEGACY_NGINX_COMMIT,
    MCP_SNIPPETS,
    NGINX_COMMIT,
    NGINX_MANIFEST,
    NGINX_SNIPPET_DIR,
    STATE_DIR,
    TOKEN_FILE,
)
from mcpedge.model.site import token_map_content
from mcpedge.operations.nginx import nginx_template
from mcpedge.operations.secrets import secret_file

ACME_SITE = "mcp-edge-acme.conf"
MCP_SITE = "mcp-edge-site.conf"
# The bundle's namespace: anything here it no longer renders is removed.
NAMESPACE = [
    ("/etc/nginx/conf.d", "mcp-edge-*"),
    ("/etc/nginx/sites-available", "mcp-edge-*"),
    ("/etc/nginx/sites-enabled", "mcp-edge-*"),
    (NGINX_SNIPPET_DIR, "*"),
]


def managed_files() -> list[str]:
    return [
        "/etc/nginx/nginx.conf",
        "/etc/nginx/conf.d/mcp-edge-http.conf",
        *(f"{NGINX_SNIPPET_DIR}/{name}" for name in MCP_SNIPPETS),
        TOKEN_FILE,
        f"/etc/nginx/sites-available/{ACME_SITE}",
        f"/etc/nginx/sites-available/{MCP_SITE}",
        f"/etc/nginx/sites-enabled/{ACME_SITE}",
        f"/etc/nginx/sites-enabled/{MCP_SITE}",
        "/etc/nginx/sites-enabled/default",
    ]


def _commit(name, commit, changed):
    return server.shell(name=name, commands=[commit.command("commit")], _if=any_changed(*changed))


def _site(name, ctx):
    available = nginx_template(
        name=f"nginx site {name}", src=f"templates/etc/nginx/sites-available/{name}.j2",
        dest=f"/etc/nginx/sites-available/{name}", create_remote_dir=False, **ctx,
    )
    enabled = files.link(name=f"Enable nginx site {name}", path=f"/etc/nginx/sites-enabled/{name}",
                         target=f"/etc/nginx/sites-available/{name}", user="root", group="root")
    return [available, enabled]


@deploy("nginx: http level and ACME site")
def configure_http():
    model = for_host(host)
    ctx = model.template()
    changed = []

    commit = model.commit
    files.directory(name="nginx state directory", path=f"{STATE_DIR}/nginx", user="root", group="root", mode="700")
    # A static program (files/, shellchecked, unit-tested) and its config: the
    # one validate-reload-restore mechanism, on the NAS too.
    program = files.put(name="nginx validate-and-reload program", src=f"files{NGINX_COMMIT}", dest=NGINX_COMMIT,
                        user="root", group="root", mode="755", create_remote_dir=False)
    changed += [program, files.template(
        name="nginx validate-and-reload config", src="templates/etc/mcp-edge/nginx-commit.conf.j2",
        dest=commit.config, user="root", group="root", mode="644", create_remote_dir=False, commit=commit)]
    files.file(name=f"Remove {LEGACY_NGINX_COMMIT} (an older release's copy)", path=LEGACY_NGINX_COMMIT,
               present=False)
    # create_remote_dir=False on files whose directory the nginx package or an
    # earlier operation creates: `--dry --diff` then shows them on a fresh host.
    files.put(name="List of nginx files the bundle manages", src=_manifest(), dest=NGINX_MANIFEST,
              user="root", group="root", mode="644", create_remote_dir=False)
    server.shell(name="Keep the distribution's nginx files as last-good (first run only)",
                 commands=[commit.command("seed")], _if=program.did_change)

    changed.append(nginx_template(name="nginx main config (workers)", src="templates/etc/nginx/nginx.conf.j2",
                                  dest="/etc/nginx/nginx.conf", create_remote_dir=False, **ctx))
    changed.append(nginx_template(name="nginx http level: JSON log, rate limits, upstreams",
                                  src="templates/etc/nginx/conf.d/mcp-edge-http.conf.j2",
                                  dest="/etc/nginx/conf.d/mcp-edge-http.conf", create_remote_dir=False, **ctx))
    files.directory(name="nginx MCP snippet directory", path=NGINX_SNIPPET_DIR, user="root", group="root", mode="755")
    for snippet in MCP_SNIPPETS:
        changed.append(nginx_template(name=f"nginx MCP snippet {snippet}",
                                      src=f"templates/etc/nginx/snippets/mcp-edge/{snippet}.j2",
                                      dest=f"{NGINX_SNIPPET_DIR}/{snippet}", create_remote_dir=False, **ctx))
    changed.append(secret_file(name="nginx bearer tokens (0600 root; content never shown)", dest=TOKEN_FILE,
                               content=token_map_content(model.tokens)))
    files.directory(name="ACME challenge webroot", path=model.acme["webroot"], user="root", group="root", mode="755")
    changed += _site(ACME_SITE, ctx)
    changed.append(files.link(name="Disable the distribution's default site",
                              path="/etc/nginx/sites-enabled/default", present=False))
    changed += _remove_unmanaged()

    systemd.service(name="nginx running and enabled", service="nginx", running=True, enabled=True)
    _commit("Validate nginx and reload (previous files restored on failure)", commit, changed)


@deploy("nginx: MCP site")
def configure_site(reload_after=()):
    """``reload_after``: more operations whose change needs a reload (a re-issued certificate)."""
    model = for_host(host)
    _commit("Validate nginx and reload the MCP site (previous files restored on failure)", model.commit,
            _site(MCP_SITE, model.template()) + [op for op in reload_after if op is not None])


def _manifest():
    return StringIO("\n".join(managed_files()) + "\n")


def _remove_unmanaged():
    keep = set(managed_files())
    ops = []
    for directory, pattern in NAMESPACE:
        for path in host.get_fact(FindFiles, path=directory, fname=pattern, maxdepth=1) or []:
            if path not in keep:
                ops.append(files.file(name=f"Remove unmanaged nginx file {path}", path=path, present=False))
    return ops
