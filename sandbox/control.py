"""A control host for the bench: a second systemd target (``mcp-edge-ctl[-sN]``)
that holds a checkout of the bundle, its own settings, SSH key and secrets, and
reaches the gateway target over the bench's Docker network.

Prepared the way an operator prepares a management box (copy the bundle,
create its venv, put the settings and secrets in place); the bundle itself
then installs the drift timer and service on it (group ``control``).
"""

from __future__ import annotations

import copy
import io
import subprocess
import tarfile

import yaml

from .layout import _DOMAIN_SUFFIX, _SUFFIX, ROOT, SLOT, STATE, TARGETS, Target, log, target_exec
from .settings import settings_dict
from .state import _write
from .targets import start_target

CONTROL = Target("control", "ctl", f"mcp-edge-ctl{_SUFFIX}", 2224 + 10 * SLOT, f"127.0.{SLOT}.4",
                 f"ctl.{_DOMAIN_SUFFIX}", "target")
BUNDLE_DIR = "/opt/mcp-edge"
SECRETS_DIR = "/etc/mcp-edge-control"  # the control host's keys and secrets (0700)
ENV_FILE = f"{SECRETS_DIR}/drift.env"
STATE_DIR = "/var/lib/mcp-edge-drift"
RUNTIME_PINS = ("pyinfra", "jinja2", "pyyaml")


def start(fresh: bool = False) -> Target:
    """The control container, bare (like any target), with its SSH host key known."""
    start_target(CONTROL, fresh=fresh)
    key = target_exec(CONTROL, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    _write(STATE / "known_hosts-ctl", f"[127.0.0.1]:{CONTROL.ssh_port} {key[0]} {key[1]}\n", 0o600)
    return CONTROL


def _bundle_tar() -> bytes:
    """The bundle's files as in this checkout (tracked and new, not ignored)."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in filter(None, names):
            if (ROOT / name).is_file() and not name.startswith(("tests/", "sandbox/", "bench/")):
                tar.add(ROOT / name, arcname=name)
    return buf.getvalue()


def provision(environment: dict[str, str], settings_extra: dict | None = None) -> None:
    """Make the container a control host as an operator would: bundle + venv,
    settings reaching the gateway over the bench network, key and secrets."""
    t = CONTROL
    log(f"provisioning {t.container} as a control host (bundle, venv)")
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.split("==")[0].strip().lower() in RUNTIME_PINS]
    target_exec(t, "sh", "-c", "command -v pip3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || "
                "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
                "python3-venv python3-pip >/dev/null)")
    subprocess.run(["docker", "exec", "-i", t.container, "sh", "-c",
                    f"rm -rf {BUNDLE_DIR}/mcpedge {BUNDLE_DIR}/tasks {BUNDLE_DIR}/templates && "
                    f"mkdir -p {BUNDLE_DIR} && tar -x -C {BUNDLE_DIR}"], input=_bundle_tar(), check=True,
                   capture_output=True)
    target_exec(t, "sh", "-c", f"[ -x {BUNDLE_DIR}/.venv/bin/pyinfra ] || (python3 -m venv {BUNDLE_DIR}/.venv && "
                f"{BUNDLE_DIR}/.venv/bin/pip install -q --disable-pip-version-check {' '.join(pins)})")
    write_settings(environment, settings_extra)


def write_settings(environment: dict[str, str], settings_extra: dict | None = None) -> None:
    """The control host's own settings file and secrets."""
    t, gw = CONTROL, TARGETS["ubuntu"]
    gw_key = target_exec(gw, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    files = {
        "id_ed25519": ((STATE / "ssh" / "id_ed25519").read_text(), "600"),
        "known_hosts": (f"{gw.container} {gw_key[0]} {gw_key[1]}\n", "600"),
        "sudo-password": ((STATE / "sudo-password").read_text(), "600"),
        "ca.pem": ((STATE / "ca" / "ca.pem").read_text(), "644"),
        "drift.env": ("".join(f"{k}={v}\n" for k, v in environment.items()), "600"),
    }
    target_exec(t, "install", "-d", "-m", "700", SECRETS_DIR)
    for name, (text, mode) in files.items():
        target_exec(t, "sh", "-c", f"cat > {SECRETS_DIR}/{name} && chmod {mode} {SECRETS_DIR}/{name}", input=text)
    data = control_view_settings(settings_extra)
    target_exec(t, "sh", "-c", f"cat > {BUNDLE_DIR}/settings.yaml && chmod 600 {BUNDLE_DIR}/settings.yaml",
                input=yaml.safe_dump(data, sort_keys=False))


def control_view_settings(extra: dict | None = None) -> dict:
    """The bench settings as seen from the control host (gateway by container name)."""
    gw = TARGETS["ubuntu"]
    data = copy.deepcopy(settings_dict())
    # The gateway only: other bench hosts are not reachable this way.
    data["hosts"] = [h for h in data["hosts"] if h["name"] == gw.name]
    data = {k: v for k, v in data.items() if k in ("ssh", "hosts", "ubuntu")}
    data["ssh"].update(key_file=f"{SECRETS_DIR}/id_ed25519", known_hosts_file=f"{SECRETS_DIR}/known_hosts",
                       sudo_password_file=f"{SECRETS_DIR}/sudo-password")
    data["hosts"][0].update(address=gw.container, port=22)
    data["ubuntu"]["acme"]["ca_bundle_file"] = f"{SECRETS_DIR}/ca.pem"
    # The bench control container has neither the MCP SDK nor a route to the
    # public name; a real control host keeps the post-apply check on.
    data["ubuntu"]["verify"] = {"enabled": False}
    for section, values in (extra or {}).items():  # replaces whole subsections
        data.setdefault(section, {}).update(values)
    return data


def deploying_settings(base: dict, control: dict) -> dict:
    """The settings the test machine deploys with: the bench's + the control host."""
    data = copy.deepcopy(base)
    data["hosts"].append({"name": CONTROL.name, "group": "control", "address": "127.0.0.1",
                          "port": CONTROL.ssh_port, "known_hosts_file": "known_hosts-ctl"})
    data["control"] = {"bundle_dir": BUNDLE_DIR, "environment_file": ENV_FILE, "state_dir": STATE_DIR, **control}
    return data
