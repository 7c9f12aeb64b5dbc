"""Docker images and containers, and the digest of a build context."""

from __future__ import annotations

import re

from pyinfra.api import FactBase, QuoteString, StringCommand


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
