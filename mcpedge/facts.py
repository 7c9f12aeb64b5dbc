"""Custom pyinfra facts used by the mcp-edge operations.

Each fact is read-only and cheap; none needs anything the deploy installs
except where ``requires_command`` says so (then it returns its default on a
fresh host).
"""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase, QuoteString, StringCommand

def docker_path(nas: dict) -> str | None:
    """The NAS's docker CLI: ``synology.docker``, or found by :class:`SynologyDocker`."""
    from pyinfra import host

    return nas["docker"] if nas["docker"] != "auto" else host.get_fact(SynologyDocker)

LETSENCRYPT = "/etc/letsencrypt"


class NginxVersion(FactBase):
    """
    The installed nginx version as a tuple of ints, e.g. ``(1, 26, 3)``; ``None``
    when nginx is not installed.

    .. code:: python

        host.get_fact(NginxVersion)
    """

    stable = True  # once installed, it stays for the run (mcpedge.pyinfra_compat.fact_cache)

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


# --- Synology DSM / Docker ------------------------------------------------------------

# dsm.md §8: probe these, in this order, by absolute path (not on a non-interactive PATH).
DOCKER_CANDIDATES = (
    "/usr/local/bin/docker",
    "/var/packages/ContainerManager/target/usr/bin/docker",  # DSM 7.2+ Container Manager
    "/var/packages/Docker/target/usr/bin/docker",            # DSM <= 7.1 Docker package
    "/volume1/@appstore/ContainerManager/usr/bin/docker",
)


class SynologyDocker(FactBase):
    """Absolute path of the NAS's docker CLI (first executable candidate), or ``None``."""

    stable = True

    @staticmethod
    def default():
        return None

    def command(self):
        probes = " ".join(f"'{p}'" for p in DOCKER_CANDIDATES)
        return f'for p in {probes}; do if [ -x "$p" ]; then echo "$p"; break; fi; done; true'

    def process(self, output):
        return output[0].strip() if output else None


class DsmVersion(FactBase):
    """DSM version from /etc.defaults/VERSION as ``(major, minor)``, or ``None`` (not a NAS)."""

    @staticmethod
    def default():
        return None

    def command(self):
        return "cat /etc.defaults/VERSION 2>/dev/null || true"

    def process(self, output):
        values = dict(line.split("=", 1) for line in output if "=" in line)
        try:
            return int(values["majorversion"].strip('"')), int(values["minorversion"].strip('"'))
        except (KeyError, ValueError):
            return None


class DsmReverseProxyEntries(FactBase):
    """DSM's reverse-proxy rules (ReverseProxy.json) as a list of
    ``{"uuid", "description", "fqdn", "port"}``; empty when there are none."""

    @staticmethod
    def default():
        return []

    def command(self, store="/usr/syno/etc/www/ReverseProxy.json"):
        return StringCommand("cat", QuoteString(store), "2>/dev/null", "||", "true")

    def process(self, output):
        try:
            data = json.loads("\n".join(output) or "{}")
        except ValueError:
            return []
        return [
            {"uuid": k, "description": v.get("description"), "fqdn": v["frontend"].get("fqdn"),
             "port": v["frontend"].get("port")}
            for k, v in data.items() if isinstance(v, dict) and "frontend" in v
        ]


class DockerImageLabel(FactBase):
    """``{"id": ..., "label": ...}`` for a local image (label: the value of ``label``), or ``None``."""

    @staticmethod
    def default():
        return None

    def command(self, docker, image, label="mcp-edge.build"):
        fmt = '{{.Id}} {{index .Config.Labels "%s"}}' % label
        return StringCommand(QuoteString(docker), "image", "inspect", "--format", QuoteString(fmt),
                             QuoteString(image), "2>/dev/null", "||", "true")

    def process(self, output):
        if not output or not output[0].strip():
            return None
        parts = output[0].split()
        return {"id": parts[0], "label": parts[1] if len(parts) > 1 else None}


class DockerContainerState(FactBase):
    """``{"status", "spec", "image", "started_at", "health"}`` of a container, or ``None``."""

    @staticmethod
    def default():
        return None

    def command(self, docker, container):
        fmt = ('{{.State.Status}} {{index .Config.Labels "mcp-edge.spec"}} {{.Image}} {{.State.StartedAt}} '
               '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}')
        return StringCommand(QuoteString(docker), "container", "inspect", "--format", QuoteString(fmt),
                             QuoteString(container), "2>/dev/null", "||", "true")

    def process(self, output):
        if not output or not output[0].strip():
            return None
        status, spec, image, started, health = (output[0].split() + [""] * 5)[:5]
        return {"status": status, "spec": spec, "image": image, "started_at": started, "health": health}


class DirectoryDigest(FactBase):
    """sha256 over the names and contents of every file below a directory, or ``None``."""

    @staticmethod
    def default():
        return None

    def command(self, path):
        return StringCommand(
            "cd", QuoteString(path), "2>/dev/null", "&&",
            "find", ".", "-type", "f", "-print0", "|", "LC_ALL=C", "sort", "-z", "|",
            "xargs", "-0", "sha256sum", "|", "sha256sum", "||", "true",
        )

    def process(self, output):
        return output[0].split()[0] if output and output[0].strip() else None


class GuardStatus(FactBase):
    """What the on-NAS guard would restore: a list of paths (empty = all in place).
    ``None`` while the guard script is not installed."""

    @staticmethod
    def default():
        return None

    def command(self, script):
        # A trailing marker: pyinfra turns a fact with no output into its default.
        return StringCommand("if", "[", "-x", QuoteString(script), "];", "then", QuoteString(script), "check;",
                             "echo", "__end;", "else", "echo", "__no_guard;", "fi")

    def process(self, output):
        if output and output[0].strip() == "__no_guard":
            return None
        return [line.strip() for line in output if line.strip() and line.strip() != "__end"]


class DsmScheduledTasks(FactBase):
    """Task Scheduler and boot-up tasks, via synowebapi (dsm.md §9):
    ``{"tasks": [{"id", "name", "schedule", "extra"}], "events": [{"task_name", "operation"}]}``."""

    @staticmethod
    def default():
        return {"tasks": [], "events": []}

    def command(self):
        return (
            "/usr/syno/bin/synowebapi --exec-fastwebapi api=SYNO.Core.TaskScheduler.Root version=4 method=list;"
            " echo; /usr/syno/bin/synowebapi --exec api=SYNO.Core.EventScheduler version=1 method=list"
        )

    def process(self, output):
        result = {"tasks": [], "events": []}
        for line in output:
            try:
                data = json.loads(line).get("data") or {}
            except ValueError:
                continue
            result["tasks"] += data.get("tasks", [])
            result["events"] += data.get("events", [])
        return result


_PROBE_DOCKER = ('D=""; for p in ' + " ".join(f"'{p}'" for p in DOCKER_CANDIDATES)
                 + '; do if [ -x "$p" ]; then D="$p"; break; fi; done; [ -n "$D" ] || { echo "no docker CLI found"; exit 0; }; ')


class NasStatus(FactBase):
    """
    State of the NAS services (``docker ps`` view), for operators:

    .. code:: sh

        pyinfra inventory.py --limit synology --sudo fact mcpedge.facts.NasStatus
    """

    @staticmethod
    def default():
        return {}

    def command(self, services="loop-api,loop-mcp"):
        names = " ".join(shlex.quote(s) for s in services.split(","))
        fmt = "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} " \
              "{{.State.StartedAt}} {{.Config.Image}}"
        return _PROBE_DOCKER + f'for s in {names}; do "$D" inspect --format \'{fmt}\' "$s" 2>/dev/null || echo "/$s absent"; done'

    def process(self, output):
        result = {}
        for line in output:
            parts = line.split()
            if parts and parts[0].startswith("/"):
                keys = ("status", "health", "started_at", "image")
                result[parts[0][1:]] = dict(zip(keys, parts[1:])) if len(parts) > 2 else {"status": "absent"}
            elif parts:
                result["error"] = line
        return result


class NasLogs(FactBase):
    """
    The last lines of a NAS service's log:

    .. code:: sh

        pyinfra inventory.py --limit synology --sudo fact mcpedge.facts.NasLogs service=loop-mcp lines=100
    """

    @staticmethod
    def default():
        return []

    def command(self, service, lines=50):
        return _PROBE_DOCKER + f'"$D" logs --tail {int(lines)} {shlex.quote(service)} 2>&1'

    def process(self, output):
        return output


# --- Pre-flight (read-only checks before a host is changed) ---------------------------


class SudoUser(FactBase):
    """The user commands run as with the deploy's privileges (``root`` when sudo
    works); ``None`` when the command could not run. Read it with
    ``_ignore_errors=True`` so a broken sudo is reported, not raised."""

    @staticmethod
    def default():
        return None

    def command(self):
        return "id -un"

    def process(self, output):
        return output[0].strip() if output else None


class FreeDisk(FactBase):
    """Free space of the file system holding each path (the nearest existing
    parent of a path not created yet): ``{path: {"free": bytes, "mount": str}}``."""

    @staticmethod
    def default():
        return {}

    def command(self, paths):
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (f'for p in {quoted}; do d="$p"; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; '
                'df -Pk "$d" | awk -v p="$p" \'NR == 2 { print p, $4, $6 }\'; done')

    def process(self, output):
        result = {}
        for line in output:
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit():
                result[parts[0]] = {"free": int(parts[1]) * 1024, "mount": parts[2]}
        return result


class ListeningPorts(FactBase):
    """TCP listeners: ``[{"port", "address", "process", "user"}]``. The process
    name comes from ``ss -p`` (may be empty when it belongs to another user and
    ptrace is restricted), the user from the socket's owner (empty: root).
    ``None`` where ``ss`` is missing."""

    @staticmethod
    def default():
        return None

    def requires_command(self):
        return "ss"

    def command(self):
        return ("ss -ltnpeH | while read -r _s _r _q local _peer rest; do "
                'name=$(echo "$rest" | sed -n "s/.*users:((\\"\\([^\\"]*\\)\\".*/\\1/p"); '
                'uid=$(echo "$rest" | sed -n "s/.*uid:\\([0-9]*\\).*/\\1/p"); '
                'user=""; [ -n "$uid" ] && user=$(getent passwd "$uid" | cut -d: -f1); '
                'echo "$local ${name:--} ${user:-${uid:--}}"; done; echo __end')

    def process(self, output):
        result = []
        for line in output:
            parts = line.split()
            if len(parts) != 3:
                continue
            address, _, port = parts[0].rpartition(":")
            if port.isdigit():
                result.append({"port": int(port), "address": address.strip("[]"),
                               "process": parts[1].strip("-"), "user": parts[2].strip("-")})
        return result


class DockerPublishedPorts(FactBase):
    """Host ports published by running containers: ``{port: [[container, host address], ...]}``."""

    @staticmethod
    def default():
        return {}

    def command(self, docker):
        return StringCommand(QuoteString(docker), "ps", "--format", QuoteString("{{.Names}} {{.Ports}}"),
                             "2>/dev/null", "||", "true")

    def process(self, output):
        result = {}
        for line in output:
            name, _, ports = line.strip().partition(" ")
            for m in re.finditer(r"(\[?[0-9a-fA-F.:]*\]?):(\d+)->", ports):
                entry = [name, m.group(1).strip("[]") or "0.0.0.0"]
                result.setdefault(int(m.group(2)), [])
                if entry not in result[int(m.group(2))]:
                    result[int(m.group(2))].append(entry)
        return result


class MaskedEnvFile(FactBase):
    """
    A remote ``NAME=value`` file with the values of secret names masked on the
    host itself, so secret values never cross the wire (nor show in ``-vvv``
    output): such a line comes back as ``NAME=<masked sha256:0123456789ab>``,
    the digest being that of the whole line. ``None`` when there is no file.

    .. code:: python

        host.get_fact(MaskedEnvFile, path="/etc/mcp-edge/gateway.env", names=("API_TOKEN",))
    """

    @staticmethod
    def default():
        return None

    def command(self, path, names=()):
        patterns = "|".join(f"{n}=*" for n in names) or "__mcp_edge_no_secret_names__=*"
        script = (
            'f="$1"; [ -f "$f" ] || exit 0; echo __present; '
            'while IFS= read -r line || [ -n "$line" ]; do case "$line" in '
            + patterns
            + ') printf "%s=<masked sha256:%s>\\n" "${line%%=*}" '
            '"$(printf "%s" "$line" | sha256sum | cut -c1-12)";; '
            '*) printf "%s\\n" "$line";; esac; done < "$f"'
        )
        return StringCommand("sh", "-c", QuoteString(script), "sh", QuoteString(path))

    def process(self, output):
        if not output or output[0] != "__present":
            return None
        return "".join(line + "\n" for line in output[1:])
