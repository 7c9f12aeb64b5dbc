"""What one drifted operation would do on one host, as report items.

Generic for every operation: each file it would upload is a ``content`` (or
``missing``) item with before/after digests and a unified diff (masked for
files holding secrets; none at all for files written whole as secrets); an
operation that only fixes a file's metadata is a ``mode`` or ``owner`` item.
An operation module can describe its own operations better: a module-level
``DRIFT = {"op_name": (kind, describer)}`` where ``describer(kwargs, fact)``
returns the item's ``before``/``after`` (see ``mcpedge.operations.certbot``).
"""

from __future__ import annotations

import importlib

from mcpedge import pyinfra_compat

from .report import sha256

MAX_DIFF_LINES = 400

# pyinfra's own operations: the kind of resource each changes.
KINDS = {
    "files.link": "link", "files.directory": "directory", "files.file": "file", "files.line": "content",
    "files.block": "content", "systemd.service": "service", "systemd.daemon_reload": "service",
    "apt.packages": "package", "apt.update": "package", "apt.repo": "package",
    "server.user": "account", "server.group": "account",
}
_FILE_OPS = ("files.put", "files.template", "nginx.nginx_template", "secrets.secret_template")
_RESOURCE_KEYS = ("dest", "path", "service", "package", "cert_name", "user", "group")


def _own_describer(func):
    """(kind, describer) an operation's module declares for it in ``DRIFT``, or None."""
    try:
        return getattr(importlib.import_module(func.__module__), "DRIFT", {}).get(func.__name__)
    except ImportError:
        return None


def _read_src(src) -> str | None:
    try:
        if hasattr(src, "getvalue"):
            value = src.getvalue()
        else:
            with open(src, "rb") as f:
                value = f.read()
        return value.decode() if isinstance(value, bytes) else value
    except (OSError, UnicodeDecodeError):
        return None


def _upload_item(base: dict, cmd, fact) -> dict:
    from pyinfra.facts.files import File, FileContents, Sha256File

    from mcpedge.facts.secrets import MaskedEnvFile
    from mcpedge.operations.secrets import SecretContent, masked_diff

    remote = fact(File, path=cmd.dest)
    item = dict(base, resource=cmd.dest, kind="content" if remote else "missing")
    if isinstance(cmd.src, SecretContent) and cmd.src.masked is None:
        after_text, after_raw, before_text = None, cmd.src.getvalue(), None  # secret_file: no diff at all
    elif isinstance(cmd.src, SecretContent):
        after_text, after_raw = cmd.src.masked, cmd.src.getvalue()
        before_text = fact(MaskedEnvFile, path=cmd.dest, names=cmd.src.secret_names) if remote else None
    else:
        after_text = after_raw = _read_src(cmd.src)
        lines = fact(FileContents, path=cmd.dest) if remote else None
        before_text = "".join(line + "\n" for line in lines) if lines is not None else None
    item["before"] = f"sha256:{fact(Sha256File, path=cmd.dest)}" if remote else None
    item["after"] = sha256(after_raw) if after_raw is not None else None
    if after_text is not None:
        diff = masked_diff(before_text, after_text, cmd.dest)
        if len(diff) > MAX_DIFF_LINES:
            diff = diff[:MAX_DIFF_LINES] + [f"... ({len(diff) - MAX_DIFF_LINES} more lines)\n"]
        item["diff"] = "".join(diff)
    hidden = " (content not shown: it holds secrets)" if after_text is None and after_raw is not None else ""
    item["actions"] = [f"upload {cmd.dest}{hidden}"]
    return item


def _metadata_item(base: dict, func_name: str, kind: str, kwargs: dict, commands: list[str], fact) -> dict:
    """Only a file's metadata changes: say which, with before and after."""
    from pyinfra.facts.files import File

    resource = base["resource"]
    if func_name in _FILE_OPS or kind in ("file", "directory"):
        remote = fact(File, path=resource) if resource.startswith("/") else None
        for words in (c.split() for c in commands):
            if len(words) >= 3 and words[0] == "chmod":
                return dict(base, kind="mode", before=str(remote["mode"]) if remote else None, after=words[-2])
            if len(words) >= 3 and words[0] == "chown":
                before = f"{remote['user']}:{remote['group']}" if remote else None
                return dict(base, kind="owner", before=before, after=words[-2])
        if func_name == "files.file" and kwargs.get("present") is False:
            return dict(base, kind="unmanaged", before="present", after="absent")
    return base


def describe(state, host, op_hash, op_data) -> list[dict]:
    """Report items for one operation that would change something on ``host``."""
    from pyinfra.api.command import FileUploadCommand, StringCommand

    name = sorted(state.op_meta[op_hash].names)[0]
    func, kwargs = pyinfra_compat.operation_call(op_data)
    func_name = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}" if func else "unknown"
    own = _own_describer(func) if func else None
    kind = own[0] if own else KINDS.get(func_name, func_name)
    resource = next((str(kwargs[k]) for k in _RESOURCE_KEYS if kwargs.get(k)), None)
    if resource is None and kwargs.get("packages"):
        resource = " ".join(kwargs["packages"])
    base = {"host": host.name, "operation": name, "resource": resource or name, "kind": kind,
            "before": None, "after": None, "diff": None, "actions": []}

    def fact(cls, **kw):  # read as the operation reads it (its sudo, env ...)
        previous = host.current_op_global_arguments
        host.current_op_global_arguments = op_data.global_arguments
        try:
            return host.get_fact(cls, **kw)
        finally:
            host.current_op_global_arguments = previous

    try:
        commands = list(op_data.command_generator())
    except Exception as exc:  # noqa: BLE001 - describe what we can
        base["actions"] = [f"(could not list the commands: {type(exc).__name__})"]
        return [base]
    uploads = [_upload_item(base, c, fact) for c in commands if isinstance(c, FileUploadCommand)]
    if uploads:
        return uploads
    shown = [c.get_masked_value() if isinstance(c, StringCommand) else type(c).__name__ for c in commands]
    base["actions"] = shown[:10]
    if own:
        return [dict(base, **own[1](kwargs, fact))]
    return [_metadata_item(base, func_name, kind, kwargs, shown, fact)]
