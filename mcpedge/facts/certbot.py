"""certbot's view of a certificate lineage."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand

LETSENCRYPT = "/etc/letsencrypt"


# Domains on the live certificate, read with certbot's own Python (no openssl CLI needed).
_SAN_SCRIPT = (
    "import sys; from cryptography import x509; "
    "c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read()); "
    "s = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value; "
    "print('__domains=' + ' '.join(sorted(s.get_values_for_type(x509.DNSName))))"
)


class CertbotCertificate(FactBase):
    """
    What certbot holds for one certificate lineage, or ``None`` when there is none:

    .. code:: python

        {
            "server": "https://acme-v02.api.letsencrypt.org/directory",
            "webroot": "/var/www/mcp-edge-acme",
            "files_ok": True,                   # live fullchain + privkey present
            "domains": ["mcp.example.com"],     # names on the live certificate
        }
    """

    @staticmethod
    def default():
        return None

    def command(self, cert_name):
        conf = f"{LETSENCRYPT}/renewal/{cert_name}.conf"
        live = f"{LETSENCRYPT}/live/{cert_name}"
        return StringCommand(
            "if", "[", "-f", QuoteString(conf), "];", "then",
            "grep", "-E", QuoteString("^(server|webroot_path) = "), QuoteString(conf), ";",
            "if", "[", "-s", QuoteString(f"{live}/fullchain.pem"), "]", "&&",
            "[", "-s", QuoteString(f"{live}/privkey.pem"), "];", "then",
            "echo", "__files_ok=1;",
            "python3", "-c", QuoteString(_SAN_SCRIPT), QuoteString(f"{live}/cert.pem"), "||", "true;",
            "fi;", "fi",
        )

    def process(self, output):
        if not output:
            return None
        info = {"server": None, "webroot": None, "files_ok": False, "domains": []}
        for raw in output:
            key, _, value = (part.strip() for part in raw.partition("="))
            if key == "__files_ok":
                info["files_ok"] = True
            elif key == "__domains":
                info["domains"] = sorted(value.split())
            elif key == "server":
                info["server"] = value
            elif key == "webroot_path":
                info["webroot"] = value.rstrip(",").split(",")[0].strip()
        return info
