"""Helpers for the gateway's unit tests: start the real program on a temp config.

The gateway runs as a subprocess (``--listen 127.0.0.1:0``; it logs the port it got)
and wraps the bench's real demo stdio server. Every wait here has a deadline.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
# The program: the package files/usr/local/lib/mcp-edge/mcp_edge_gateway, run as `python -m`
# (as its systemd unit does) with its directory on PYTHONPATH for every child of the tests.
PROGRAM_DIR = REPO / "files/usr/local/lib/mcp-edge"
PROGRAM = ["-m", "mcp_edge_gateway"]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROGRAM_DIR), os.environ.get("PYTHONPATH")]))
DEMO = REPO / "sandbox/images/target/mcp-demo-server.js"
CLIENT = "X-MCP-Edge-Client"
ACCEPT_BOTH = {"Accept": "application/json, text/event-stream"}


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (read from /proc, zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def make_config(tmp_path: Path, **overrides: Any) -> dict:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    env_file = tmp_path / "server.env"  # as the deploy writes it (the secrets live here)
    env_file.write_text("# Managed by mcp-edge (mode 0600: may hold secrets).\n"
                        "# NAME=<JSON string>, one per line.\n"
                        'API_TOKEN="s3cret-token-value"\nGREETING="hello \\"world\\" = hi"\n')
    config = {
        "name": "demo",
        "command": ["node", str(DEMO)],
        "env_file": str(env_file),
        "environment": {"INLINE": "from the config"},
        "working_directory": str(workdir),
        "base_path": "",
        "sessions": {"max_total": 64, "max_per_client": 16, "idle_timeout": 1800, "evict_min_idle": 60},
        "keepalive_interval": 25,
        "max_message_bytes": 65536,
        "client_header": CLIENT,
        "bind_sessions_to_client": False,
        "log_level": "debug",
    }
    sessions = overrides.pop("sessions", {})
    config.update(overrides)
    config["sessions"] = {**config["sessions"], **sessions}
    return config


class GatewayProcess:
    """The gateway program, started on a config; `url()` builds its URLs."""

    def __init__(self, tmp_path: Path, config: dict, listen: str = "127.0.0.1:0",
                 argv: list[str] | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        self.config = config
        self.base_path = config["base_path"]
        self.config_path = tmp_path / f"gateway-{time.monotonic_ns()}.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = tmp_path / f"gateway-{time.monotonic_ns()}.log"
        argv = argv or [sys.executable, *PROGRAM, "--config", str(self.config_path), "--listen", listen]
        # The gateway must not pass its own environment on to children: give it one to leak.
        env = {**os.environ, "GATEWAY_ONLY_VAR": "must-not-reach-children"}
        with open(self.log_path, "wb") as log:  # the children's stderr lands here too
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env, pass_fds=pass_fds)
        address = wait_for(lambda: self._line("listening on "), what="the gateway to listen")
        address = address.split("listening on ", 1)[1].split()[0]
        # A unix socket: httpx is given it as its transport, the host name is a placeholder.
        self.origin = "http://gateway" if address.startswith("/") else f"http://{address}"

    def _line(self, text: str) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}: {self.log()}")
        return next((ln for ln in self.log().splitlines() if text in ln), None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"{self.origin}{self.base_path}{path}"

    def children(self) -> list[int]:
        return children_of(self.proc.pid)

    def status(self) -> dict:
        return httpx.get(self.url("/status"), timeout=5).json()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start_gateway(tmp_path: Path):
    """Start gateways for one test (config overrides as keywords); all are stopped after it."""
    started: list[GatewayProcess] = []

    def start(listen: str = "127.0.0.1:0", **overrides: Any) -> GatewayProcess:
        gw = GatewayProcess(tmp_path, make_config(tmp_path, **overrides), listen)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        pids = gw.children()
        gw.stop()
        for pid in pids:  # never leave a demo server behind, whatever the test did
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    """One gateway with roomy limits, shared by the tests of a module (distinct client keys)."""
    tmp_path = tmp_path_factory.mktemp("gateway")
    gw = GatewayProcess(tmp_path, make_config(tmp_path))
    yield gw
    gw.stop()


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signs for 127.0.0.1 and localhost: (ca, cert, key) PEM files."""
    pytest.importorskip("cryptography", reason="the TLS tests make their CA with `cryptography`")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-edge unit-test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
