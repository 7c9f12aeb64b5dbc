"""A TLS certificate from an ACME CA with certbot's webroot plugin."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from ..facts.certbot import LETSENCRYPT, CertbotCertificate


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


def describe_certificate(kwargs, fact) -> dict:
    """For the drift report: what issuing the certificate again would change."""
    current = fact(CertbotCertificate, cert_name=kwargs["cert_name"])
    before = "absent" if not current else ("files missing" if not current["files_ok"] else "other server/domains")
    return {"before": before, "after": "issued"}


# How the drift report (mcpedge.drift.describe) names and describes these operations.
DRIFT = {"certificate": ("certificate", describe_certificate)}
