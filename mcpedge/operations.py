"""Custom pyinfra operations used by the mcp-edge tasks."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.operations import files

from .facts import LETSENCRYPT, CertbotCertificate, NginxVersion, NpmGlobalPackage

# nginx 1.25.1 replaced `listen ... http2` with the `http2 on;` directive.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


@operation()
def nginx_template(src, dest, user="root", group="root", mode="644", **data):
    """
    Render an nginx template that may depend on the installed nginx version.

    + src: local Jinja2 template
    + dest: remote path
    + user/group/mode: ownership and permissions of the file
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
    yield from files.template._inner(src=src, dest=dest, user=user, group=group, mode=mode, **data)


@operation()
def certificate(cert_name, domains, email, webroot, server, ca_bundle=None):
    """
    Obtain a certificate with certbot's webroot plugin; do nothing when the
    lineage already exists for the same ACME server and domains with its files in
    place. Renewal is left to the distribution's certbot timer.

    + cert_name: certbot lineage name (``/etc/letsencrypt/live/<cert_name>``)
    + domains: list of names on the certificate
    + email: registration email
    + webroot: directory nginx serves ``/.well-known/acme-challenge/`` from
    + server: ACME directory URL
    + ca_bundle: remote PEM file to trust for the ACME server (private CAs)

    A lineage whose files were deleted is removed and issued again.

    .. code:: python

        certificate(
            name="Obtain the TLS certificate",
            cert_name="mcp.example.com",
            domains=["mcp.example.com"],
            email="ops@example.com",
            webroot="/var/www/mcp-edge-acme",
            server="https://acme-v02.api.letsencrypt.org/directory",
        )
    """
    domains = sorted(domains)
    current = host.get_fact(CertbotCertificate, cert_name=cert_name)
    if current and current["files_ok"] and current["server"] == server and current["domains"] == domains \
            and current["webroot"] == webroot:
        host.noop(f"certificate {cert_name} is in place for {', '.join(domains)}")
        return

    env = ["env", QuoteString(f"REQUESTS_CA_BUNDLE={ca_bundle}")] if ca_bundle else []
    if current and not current["files_ok"]:
        # certbot refuses to work on a lineage with missing live files
        yield StringCommand(*env, "certbot", "delete", "--non-interactive", "--cert-name", QuoteString(cert_name))
    args = [
        *env, "certbot", "certonly", "--webroot", "-w", QuoteString(webroot),
        "--cert-name", QuoteString(cert_name),
    ]
    for domain in domains:
        args += ["-d", QuoteString(domain)]
    args += [
        "--server", QuoteString(server), "--email", QuoteString(email), "--agree-tos",
        "--no-eff-email", "--non-interactive", "--expand", "--config-dir", LETSENCRYPT,
        # a new ACME server (say, staging -> production) needs a new certificate now
        "--force-renewal" if current and current["files_ok"] and current["server"] != server
        else "--keep-until-expiring",
    ]
    yield StringCommand(*args)


@operation()
def npm_global(package, version, prefix="/usr/local"):
    """
    Install one npm package globally at an exact version.

    + package: npm package name
    + version: exact version (``4.0.0``); an installed other version is replaced
    + prefix: npm's global prefix (Debian's npm: ``/usr/local``)

    pyinfra's ``npm.packages`` parses ``npm list`` output, whose tree drawing
    depends on the locale; this reads the installed package.json instead.

    .. code:: python

        npm_global(name="Install Supergateway", package="supergateway", version="4.0.0")
    """
    installed = host.get_fact(NpmGlobalPackage, package=package, prefix=prefix)
    if installed == version:
        host.noop(f"{package}@{version} is installed")
        return
    yield StringCommand("npm", "install", "--global", "--no-audit", "--no-fund", "--prefix", QuoteString(prefix),
                        QuoteString(f"{package}@{version}"))
