"""The bench's own secrets and keys in .sandbox/: SSH key, sudo password, the bench CA, Pebble's config."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from .layout import ACME_ALIAS, ACME_CONTAINER, STATE, run


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def ensure_state() -> None:
    STATE.mkdir(mode=0o700, exist_ok=True)
    key = STATE / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(mode=0o700, exist_ok=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mcp-edge-bench", "-f", str(key))
    pw = STATE / "sudo-password"
    if not pw.exists():
        _write(pw, secrets.token_urlsafe(18) + "\n", 0o600)
    ca = STATE / "ca"
    if not (ca / "ca.pem").exists():
        ca.mkdir(mode=0o700, exist_ok=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "3650", "-subj", "/CN=mcp-edge bench CA", "-keyout", str(ca / "ca.key"),
            "-out", str(ca / "ca.pem"))
    leaf = ca / "acme.pem"
    if not leaf.exists():
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={ACME_ALIAS}", "-keyout", str(ca / "acme.key"), "-out", str(ca / "acme.csr"))
        ext = ca / "acme.ext"
        _write(ext, f"subjectAltName=DNS:{ACME_ALIAS},DNS:{ACME_CONTAINER},DNS:localhost,IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", str(ca / "acme.csr"), "-CA", str(ca / "ca.pem"),
            "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
            "-out", str(leaf))
        (ca / "acme.key").chmod(0o644)  # read by pebble inside its container
    _write(STATE / "pebble.json", json.dumps({"pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/tls/acme.pem",
        "privateKey": "/etc/pebble/tls/acme.key",
        "httpPort": 80,
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}, indent=2) + "\n")


def sudo_password() -> str:
    return (STATE / "sudo-password").read_text().strip()
