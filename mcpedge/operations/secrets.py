"""Files that hold secrets: uploaded, never shown (a masked diff at most)."""

from __future__ import annotations

import difflib
import hashlib
import os
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.api.util import get_template
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations.util import files as file_utils

from ..facts.secrets import MaskedEnvFile
from ..settings import reveal


@operation()
def secret_file(dest, content, user="root", group="root", mode="600"):
    """
    Upload a file that holds secrets: like ``files.put``, but its content never
    appears in ``--diff`` output (only that it would change).

    + dest: remote path
    + content: the file's text
    + user/group/mode: ownership and permissions (0600 by default)

    .. code:: python

        secret_file(name="Bearer tokens (0600)", dest="/etc/nginx/snippets/mcp-edge/access-tokens.conf",
                    content=token_map)
    """
    # pyinfra's files.put prints whole files under --diff; config.DIFF is shared by
    # every host's greenlet, so it cannot be switched off for one upload: own upload.
    yield from _put_secret(SecretContent(content, None, ()), dest, user, group, mode, create_remote_dir=True)


# --- Files holding secrets --------------------------------------------------------------


class SecretContent(StringIO):
    """Rendered content that holds secrets: its repr never shows them, and it
    carries the masked text (``masked``) that reports and diffs may show;
    ``masked=None``: the whole file is secret, no diff of it is ever shown."""

    def __init__(self, text: str, masked: str, names: tuple[str, ...]):
        super().__init__(text)
        self.masked = masked
        self.secret_names = names

    def __repr__(self) -> str:
        return "<secret content>"


def mask_env_text(text: str, names=(), secrets=()) -> str:
    """``text`` with the value of every ``NAME=`` line of ``names`` replaced by a
    digest marker (as :class:`~mcpedge.facts.MaskedEnvFile` does remotely), and
    any remaining occurrence of a secret value replaced by ``***``."""
    out = []
    prefixes = tuple(f"{n}=" for n in names)
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if prefixes and body.startswith(prefixes):
            digest = hashlib.sha256(body.encode()).hexdigest()[:12]
            line = f"{body.split('=', 1)[0]}=<masked sha256:{digest}>\n"
        out.append(line)
    masked = "".join(out)
    # longest first: a secret containing another is masked whole
    for value in sorted({reveal(s) for s in secrets if reveal(s)}, key=len, reverse=True):
        masked = masked.replace(value, "***")
    return masked


def masked_diff(before: str | None, after: str, path: str) -> list[str]:
    """A unified diff (with ---/+++ headers) of two masked texts."""
    return list(difflib.unified_diff(
        (before or "").splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=path if before is not None else "/dev/null", tofile=path, n=2,
    ))


def _put_secret(content: SecretContent, dest, user, group, mode, create_remote_dir=False):
    """Upload ``content`` unless the remote file has the same sha1, then fix
    mode/owner. ``--diff`` shows only ``content.masked`` (nothing when None)."""
    mode = file_utils.ensure_mode_int(mode)
    remote = host.get_fact(File, path=dest)
    if create_remote_dir and not remote:
        yield StringCommand("mkdir", "-p", QuoteString(os.path.dirname(dest)))
    text = content.getvalue()
    same = bool(remote) and host.get_fact(Sha1File, path=dest) == hashlib.sha1(text.encode()).hexdigest()
    if not same:
        if state.config.DIFF:
            verb = "modify" if remote else "create"
            if content.masked is None:
                host.log(f"Will {verb} {dest} (content not shown: it holds secrets)", logger.info)
            else:
                before = host.get_fact(MaskedEnvFile, path=dest, names=content.secret_names) if remote else None
                host.log(f"Will {verb} {dest} (secret values masked)", logger.info)
                for line in masked_diff(before, content.masked, dest):
                    logger.info("  %s", line.rstrip("\n"))
            logger.info("")
        yield FileUploadCommand(content, dest, remote_temp_filename=host.get_temp_filename(dest))
        yield file_utils.chown(dest, user, group)
        yield file_utils.chmod(dest, mode)
        return

    changed = False
    if remote["mode"] != mode:
        if state.config.DIFF:
            logger.info("mode %s -> %s", remote["mode"], mode)
        yield file_utils.chmod(dest, mode)
        changed = True
    if remote["user"] != user or remote["group"] != group:
        if state.config.DIFF:
            logger.info("chown %s:%s -> %s:%s", remote["user"], remote["group"], user, group)
        yield file_utils.chown(dest, user, group)
        changed = True
    if not changed:
        host.noop(f"file {dest} is up to date (secret content)")


@operation()
def secret_template(src, dest, user, group, mode, secret_names=(), secrets=(), create_remote_dir=False, **data):
    """
    Render a ``NAME=value`` file that holds secrets and upload it; ``--diff``
    shows only a masked diff.

    + src: local Jinja2 template (rendered like ``files.template``)
    + dest: remote path
    + user/group/mode: ownership and permissions of the file (give all three)
    + secret_names: names whose ``NAME=value`` lines are masked (on the host
      too: the remote file is masked before it is read)
    + secrets: secret values; any other occurrence is shown as ``***``
    + create_remote_dir: create the parent directory if missing
    + data: template variables

    The file is replaced when the rendered content's sha1 differs from the
    remote file's. The diff shows ``NAME=<masked sha256:...>`` (a digest of
    the whole line) in place of a secret line, so a changed secret is visible
    as a changed digest. Give this operation a ``name=``: without one pyinfra
    prints every argument, the secrets included.

    .. code:: python

        secret_template(
            name="Gateway environment file",
            src="templates/etc/mcp-edge/gateway.env.j2",
            dest="/etc/mcp-edge/gateway.env",
            user="mcp-gateway", group="mcp-gateway", mode="600",
            secret_names=["API_TOKEN"], secrets=[api_token],
            gw=gw,
        )
    """
    names = tuple(secret_names)
    if not hasattr(src, "read") and state.cwd:
        src = os.path.join(state.cwd, src)
    data.setdefault("host", host)
    data.setdefault("state", state)
    data.setdefault("inventory", state.inventory)
    text = get_template(src).render(data)
    content = SecretContent(text, mask_env_text(text, names, secrets), names)
    yield from _put_secret(content, dest, user, group, mode, create_remote_dir)
