"""TLS certificate from an ACME CA with certbot (webroot), renewed by the distro timer."""

import posixpath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from mcpedge.model import for_host
from mcpedge.model.paths import ACME_CA_REMOTE, CERTBOT_DROPIN, CERTBOT_HOOK
from mcpedge.operations.certbot import certificate


@deploy("certbot")
def configure_certbot():
    model = for_host(host)
    ctx = model.template()
    acme = model.acme
    ca_bundle = None
    if acme["ca_bundle_file"]:
        ca_bundle = ACME_CA_REMOTE
        files.put(name="Trust the private ACME CA", src=acme["ca_bundle_file"], dest=ACME_CA_REMOTE, create_remote_dir=False,
                  user="root", group="root", mode="644")
    if ca_bundle:
        # Explicit directories (not create_remote_dir): `--dry --diff` shows the files on a fresh host.
        files.directory(name="certbot service drop-in directory", path=posixpath.dirname(CERTBOT_DROPIN),
                        user="root", group="root", mode="755")
    dropin = files.template(
        name="certbot renewals trust the private ACME CA", src="templates/etc/systemd/system/certbot.service.d/mcp-edge.conf.j2",
        dest=CERTBOT_DROPIN, user="root", group="root", mode="644", create_remote_dir=False, **ctx,
    ) if ca_bundle else files.file(name="No private ACME CA for renewals", path=CERTBOT_DROPIN, present=False)
    systemd.daemon_reload(name="Reload systemd units (certbot drop-in changed)", _if=dropin.did_change)

    files.directory(name="certbot deploy hook directory", path=posixpath.dirname(CERTBOT_HOOK),
                    user="root", group="root", mode="755")
    files.template(name="certbot deploy hook: validate and reload nginx",
                   src="templates/etc/letsencrypt/renewal-hooks/deploy/mcp-edge-reload-nginx.j2",
                   dest=CERTBOT_HOOK, user="root", group="root", mode="755", create_remote_dir=False, **ctx)
    cert = certificate(
        name=f"TLS certificate for {', '.join(model.domains)}",
        cert_name=model.cert_name, domains=model.domains, email=acme["email"],
        webroot=acme["webroot"], server=acme["server"], ca_bundle=ca_bundle,
    )
    # The distribution's timer renews; no second scheduler.
    systemd.service(name="certbot renewal timer enabled", service="certbot.timer", running=True, enabled=True)
    return cert  # a (re-)issued certificate is served once nginx reloads
