"""Custom pyinfra facts used by the mcp-edge operations.

Each fact is read-only and cheap; none needs anything the deploy installs
except where ``requires_command`` says so (then it returns its default on a
fresh host).
"""

from __future__ import annotations

import json
import re

from pyinfra.api import FactBase, QuoteString, StringCommand

LETSENCRYPT = "/etc/letsencrypt"


class NginxVersion(FactBase):
    """
    The installed nginx version as a tuple of ints, e.g. ``(1, 26, 3)``; ``None``
    when nginx is not installed.

    .. code:: python

        host.get_fact(NginxVersion)
    """

    @staticmethod
    def default():
        return None

    def requires_command(self):
        return "nginx"

    def command(self):
        return "nginx -v 2>&1"

    def process(self, output):
        for line in output:
            m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", line)
            if m:
                return tuple(int(x) for x in m.groups())
        return None


class NpmGlobalPackage(FactBase):
    """
    Version of a globally installed npm package (read from its package.json,
    so it works whatever the locale), or ``None``.

    .. code:: python

        host.get_fact(NpmGlobalPackage, package="supergateway")  # "4.0.0"
    """

    @staticmethod
    def default():
        return None

    def command(self, package, prefix="/usr/local"):
        path = f"{prefix}/lib/node_modules/{package}/package.json"
        return StringCommand("cat", QuoteString(path), "2>/dev/null", "||", "true")

    def process(self, output):
        try:
            return json.loads("\n".join(output)).get("version")
        except ValueError:
            return None


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
