"""Synology DSM: version, reverse-proxy rules, Task Scheduler, the guard, the docker CLI; operators' views (NasStatus, NasLogs)."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase, QuoteString, StringCommand

# docs/dsm.md §8: probe these, in this order, by absolute path (not on a non-interactive PATH).
# DSM's sudo and Task Scheduler give a minimal PATH; DSM's tools live here (docs/dsm.md §7, §8).
DSM_PATH = "/usr/syno/bin:/usr/syno/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"
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


class GuardStatus(FactBase):
    """What the on-NAS guard would restore: a list of paths (empty = all in place).
    ``None`` while the guard or its config is not installed, or when its check fails
    (an older guard, a broken config): then the guard must run."""

    @staticmethod
    def default():
        return None

    def command(self, script, config):
        # Trailing markers: pyinfra turns a fact with no output into its default.
        return StringCommand("if", "[", "-x", QuoteString(script), "]", "&&", "[", "-f", QuoteString(config), "];",
                             "then", "if", QuoteString(script), QuoteString(config), "check;", "then", "echo",
                             "__end;", "else", "echo", "__failed;", "fi;", "else", "echo", "__no_guard;", "fi")

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        if not lines or lines[-1] in ("__no_guard", "__failed"):
            return None
        return [line for line in lines if line != "__end"]


class DsmScheduledTasks(FactBase):
    """Task Scheduler and boot-up tasks, via synowebapi (docs/dsm.md §9):
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


def docker_path(nas: dict) -> str | None:
    """The NAS's docker CLI: ``synology.docker``, or found by :class:`SynologyDocker`."""
    from pyinfra import host

    return nas["docker"] if nas["docker"] != "auto" else host.get_fact(SynologyDocker)
