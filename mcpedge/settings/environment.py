"""Kinds for environment variables: EnvName, EnvMap, SecretRef, and the names no setting may set.

A value ``env:NAME`` (in an EnvMap, a SecretRef) and ``*_password_env`` are
read from this machine's environment at load time into a :class:`Secret`
(``_read_env_secret``, also used by the loader for the sudo password).
RESERVED_ENV and RESERVED_ENV_PREFIXES are the variables a server's
environment may not set (they change how a process is loaded or run).
"""

from __future__ import annotations

import re

from .kinds import Kind, _Context, _forbidden_char, _Invalid, _show
from .secrets import Secret

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}", re.ASCII)


class EnvName(Kind):
    expected = "an environment variable name matching ^[A-Z_][A-Z0-9_]*$"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            self.fail(value)
        return value


def _read_env_secret(ctx: _Context, name: str, named_by: str) -> Secret:
    value = ctx.environ.get(name)
    if value is None:
        raise _Invalid(f"environment variable {name} is not set (named by {named_by})")
    if value == "":
        raise _Invalid(f"environment variable {name} is empty (named by {named_by})")
    if _forbidden_char(value):
        raise _Invalid(f"environment variable {name} (named by {named_by}) holds a control character "
                       f"({_forbidden_char(value)}); a secret is one line of text")
    return Secret(value, f"env:{name}")


# Variables a server's environment may not set: they change how the loader,
# the interpreter or the shell behave (LD_PRELOAD, NODE_OPTIONS --require ...),
# or belong to the bundle and systemd. The gateway sets PATH, HOME and LANG.
RESERVED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "IFS", "ENV", "BASH_ENV", "CDPATH", "LANG",
    "NODE_OPTIONS", "NODE_PATH", "NODE_REPL_EXTERNAL_MODULE", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
    "PYTHONINSPECT", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
    "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF", "LOCALDOMAIN", "TMPDIR", "NOTIFY_SOCKET", "LISTEN_FDS",
    "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY",
    "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "SYSTEMD_EXEC_PID", "MAINPID",
})
RESERVED_ENV_PREFIXES = ("LD_", "DYLD_", "MCP_EDGE_", "SYSTEMD_", "MALLOC_", "GLIBC_", "LC_")


def _reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


class EnvMap(Kind):
    """Environment for a process: ``NAME: value``; a value ``env:OTHER`` is read
    from this machine's environment at load time and becomes a :class:`Secret`.
    Names that change how the process is loaded or run are refused."""

    expected = "a mapping of NAME: value (environment variables)"

    def __init__(self, key: str):
        self.key = key  # the dotted key, to name it in "named by ..."

    def __call__(self, value, ctx):
        if not isinstance(value, dict):
            self.fail(value)
        if len(value) > 256:
            raise _Invalid(f"expected at most 256 variables, got {len(value)}")
        out = {}
        for name, val in value.items():
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise _Invalid(
                    f"invalid environment variable name {_show(name)} (expected ^[A-Z_][A-Z0-9_]*$, e.g. API_TOKEN)",
                    at=f".{name}",
                )
            if _reserved_env(name):
                raise _Invalid(
                    f"{name} may not be set here: it changes how the process is loaded or run, or belongs to "
                    "the bundle (reserved: PATH, HOME, LANG, LD_*, NODE_OPTIONS, PYTHONPATH, MCP_EDGE_*, ...)",
                    at=f".{name}",
                )
            if not isinstance(val, str):
                raise _Invalid(f"expected a string value (quote numbers and booleans), got {_show(val)}", at=f".{name}")
            if len(val) > 32768:
                raise _Invalid(f"expected at most 32768 characters, got {len(val)}", at=f".{name}")
            if val.startswith("env:"):
                ref = val[4:]
                if not _ENV_NAME.fullmatch(ref):
                    raise _Invalid(
                        f"expected 'env:NAME' with NAME matching ^[A-Z_][A-Z0-9_]*$, got {_show(val)}", at=f".{name}"
                    )
                try:
                    val = _read_env_secret(ctx, ref, f"{self.key}.{name}")
                except _Invalid as e:
                    raise _Invalid(e.message, at=f".{name}") from None
            out[name] = val
        return out


class SecretRef(Kind):
    """``env:NAME``: a secret read from this machine's environment at load time
    (never written in the settings file). ``pattern`` checks the value's shape."""

    def __init__(self, key: str, pattern: str = r"[A-Za-z0-9_-]{32,512}",
                 shape: str = "32 to 512 characters of A-Z, a-z, 0-9, '_' and '-'"):
        self.key, self.pattern, self.shape = key, re.compile(pattern, re.ASCII), shape
        self.expected = "'env:NAME' (the secret is read from environment variable NAME)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.startswith("env:") or not _ENV_NAME.fullmatch(value[4:]):
            self.fail(value)
        secret = _read_env_secret(ctx, value[4:], self.key)
        if not self.pattern.fullmatch(secret.reveal()):
            raise _Invalid(f"the value of environment variable {value[4:]} must be {self.shape}")
        return secret
