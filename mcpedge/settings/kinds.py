"""How one value is checked and normalized: the :class:`Kind` base and the general kinds.

Here: what every kind relies on (``_Invalid``, raised for a bad value;
``_Context``, what a kind may look at; ``_show``, how a bad value is quoted;
``_forbidden_char``, the control-character screen every string passes; and
``YamlScalar``, a number the loader refused to guess) and the kinds that are
not about one kind of thing: Str, Bool, Int, Port, Duration, Choice, Rate,
Size (with :func:`size_bytes`), Enum, WorkerProcesses, ListOf, Nullable.

The other kinds, by what they check: ``names.py`` (DNS names, addresses,
URLs, origins, images, user and group names, commands), ``paths.py`` (paths
on the target and on this machine, bind mounts), ``environment.py``
(environment variables and the secrets they hold).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .secrets import Secret


class _Invalid(Exception):
    """Raised by a kind: ``message`` is reported at the field's key + ``at``."""

    def __init__(self, message: str, at: str = ""):
        super().__init__(message)
        self.message = message
        self.at = at


class YamlScalar:
    """A YAML scalar the loader refused to guess: YAML 1.1 reads ``022`` as 18,
    ``1:30`` as 90 and ``0x1f`` as 31, and a 5,000-digit number cannot become
    an int. Kept as its text so the problem is reported at its key."""

    def __init__(self, text: str, problem: str):
        self.text, self.problem = text, problem

    def __repr__(self) -> str:
        return self.text


def _show(value: Any) -> str:
    """How a bad value is quoted in an error message (YAML-ish, never too long)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return "a secret"
    if isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= 120 else shown[:100] + "...' (" + str(len(value)) + " characters)"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, YamlScalar):
        return value.text if len(value.text) <= 40 else value.text[:20] + f"... ({len(value.text)} characters)"
    if isinstance(value, int) and abs(value) > 10**15:
        return f"a number of {len(str(abs(value)))} digits"
    return repr(value)


# Characters no value may hold, whatever file it lands in: C0/C1 controls (a
# newline starts a new directive or unit line), Unicode line separators, and
# invisible format characters (zero-width, bidirectional overrides).
def _forbidden_char(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return f"U+{ord(ch):04X}"
    return None


class _Context:
    """What kinds may need: the settings file's directory and the environment."""

    def __init__(self, base_dir: str, environ: dict[str, str]):
        self.base_dir = base_dir
        self.environ = environ


class Kind:
    """Checks one value and returns it normalized; raises _Invalid otherwise.

    Every kind is written for the place its value lands in (an nginx directive,
    a systemd unit line, a shell word, an env file, JSON): it accepts only what
    is valid *and* harmless there, so no template needs to escape anything."""

    expected = "a value"

    def __call__(self, value: Any, ctx: _Context) -> Any:  # pragma: no cover
        raise NotImplementedError

    def fail(self, value: Any, hint: str = "") -> None:
        raise _Invalid(f"expected {self.expected}, got {_show(value)}{hint}")


def _ascii_fullmatch(pattern: re.Pattern, value: str) -> bool:
    # re.ASCII: \d and \w would otherwise accept Unicode digits and letters
    # ('１０r/s') that nginx, systemd and the shell do not read as the operator meant.
    return pattern.fullmatch(value) is not None


class Str(Kind):
    def __init__(self, pattern: str | None = None, expected: str = "a non-empty string", max_len: int = 1024):
        self.pattern = re.compile(pattern, re.ASCII) if pattern else None
        self.expected = expected
        self.max_len = max_len

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.strip():
            self.fail(value)
        if len(value) > self.max_len:
            raise _Invalid(f"expected at most {self.max_len} characters, got {len(value)}")
        if self.pattern and not _ascii_fullmatch(self.pattern, value):
            self.fail(value)
        return value


class Bool(Kind):
    expected = "true or false (an unquoted YAML boolean)"

    def __call__(self, value, ctx):
        if not isinstance(value, bool):
            self.fail(value)
        return value


class Int(Kind):
    """A whole number within bounds (every integer lands somewhere with a limit)."""

    def __init__(self, min: int = 0, max: int = 2**31 - 1, expected: str = ""):
        self.min, self.max = min, max
        self.expected = expected or f"an integer between {min} and {max}"

    def __call__(self, value, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value)
        if not self.min <= value <= self.max:
            self.fail(value)
        return value


class Port(Int):
    def __init__(self):
        super().__init__(1, 65535, "a port number between 1 and 65535")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)


def _fmt_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Duration(Kind):
    """``30s``, ``5m``, ``24h``, ``7d`` or bare integer seconds -> int seconds, within bounds
    (Node's timers overflow past 24.8 days; nginx and systemd have their own limits)."""

    def __init__(self, min: int = 0, max: int = 7 * 86400):
        self.min, self.max = min, max
        self.expected = (f"a duration like '30s', '5m', '24h' or '7d' (or whole seconds) "
                         f"between {_fmt_duration(min)} and {_fmt_duration(max)}")

    def __call__(self, value, ctx):
        if isinstance(value, bool):
            self.fail(value)
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
            seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            self.fail(value)
        if not self.min <= seconds <= self.max:
            self.fail(value)
        return seconds


class Choice(Kind):
    """A duration from a fixed set (DSM's Task Scheduler repeats only every 1, 5, 10, 15, 20 or 30 min)."""

    def __init__(self, seconds: tuple[int, ...], why: str):
        self.duration = Duration(min(seconds), max(seconds))
        self.seconds = seconds
        self.expected = f"one of {', '.join(_fmt_duration(s) for s in seconds)} ({why})"

    def __call__(self, value, ctx):
        try:
            seconds = self.duration(value, ctx)
        except _Invalid:
            self.fail(value)
        if seconds not in self.seconds:
            self.fail(value)
        return seconds


_RATE = re.compile(r"([0-9]{1,6})r/([sm])", re.ASCII)


class Rate(Kind):
    """An nginx ``limit_req_zone`` rate, kept as the string nginx expects."""

    expected = "a rate like '10r/s' or '600r/m' (1 to 100000 requests)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not (m := _RATE.fullmatch(value)) or not 1 <= int(m.group(1)) <= 100000:
            self.fail(value)
        return f"{int(m.group(1))}r/{m.group(2)}"


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]{1,15})([kKmMgGtT]?)", re.ASCII)


def _fmt_size(n: int) -> str:
    for unit in ("t", "g", "m", "k"):
        if n >= _SIZE_UNITS[unit] and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return str(n)


class Size(Kind):
    """A size (``512k``, ``4m``, ``1g`` or bytes) within bounds, kept as nginx writes it."""

    def __init__(self, min: int = 0, max: int = 1 << 40):
        self.min, self.max = min, max
        self.expected = f"a size like '512k', '4m' or '1g' (or whole bytes) between {_fmt_size(min)} and {_fmt_size(max)}"

    def __call__(self, value, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            self.fail(value)
        m = _SIZE.fullmatch(text)
        if not m:
            self.fail(value)
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if not self.min <= n <= self.max:
            self.fail(value)
        return f"{int(m.group(1))}{m.group(2).lower()}"


def size_bytes(size: str) -> int:
    """A size from the settings ('1g', '512m', '4096') in bytes."""
    m = _SIZE.fullmatch(size)
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


class Enum(Kind):
    def __init__(self, *values: str):
        self.values = values
        self.expected = "one of " + ", ".join(repr(v) for v in values)

    def __call__(self, value, ctx):
        if isinstance(value, str) and value in self.values:
            return value
        hint = ""
        if isinstance(value, bool):
            hint = " (YAML reads unquoted yes/no/on/off as a boolean: quote the value)"
        self.fail(value, hint)


class WorkerProcesses(Kind):
    expected = "'auto' or an integer between 1 and 1024"

    def __call__(self, value, ctx):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024):
            return value
        self.fail(value)


class ListOf(Kind):
    def __init__(self, item: Kind, max_items: int = 1024):
        self.item = item
        self.max_items = max_items
        self.expected = f"a list, each entry {item.expected}"

    def __call__(self, value, ctx):
        if not isinstance(value, list):
            self.fail(value)
        if len(value) > self.max_items:
            raise _Invalid(f"expected at most {self.max_items} entries, got {len(value)}")
        out = []
        for i, entry in enumerate(value):
            try:
                out.append(self.item(entry, ctx))
            except _Invalid as e:
                raise _Invalid(e.message, at=f"[{i}]{e.at}") from None
        return out


class Nullable(Kind):
    """``null`` or the wrapped kind."""

    def __init__(self, inner: Kind):
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def __call__(self, value, ctx):
        return None if value is None else self.inner(value, ctx)
