"""Kinds for names: DNS names, addresses, URLs, origins, images, user and group names, commands.

Domain, Address, IpAddress, Email, HttpsUrl, AcmeServer (with
ACME_DIRECTORIES), Cidr, Origin, ImageRef, UserName, Command and GroupName.
Each accepts only the strict shape that is safe where the value lands (an
nginx map, certbot's command line, a Docker argument, a unit's ExecStart=).
The general kinds are in ``kinds.py``; paths in ``paths.py``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable
from urllib.parse import urlsplit

from .kinds import Kind, Str, _ascii_fullmatch, _Invalid, _show
from .paths import AbsPath

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def _is_dns_name(name: str, min_labels: int) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= min_labels
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


class Domain(Kind):
    """A fully qualified DNS name (RFC 1123 labels, at least one dot), lowercased."""

    expected = "a DNS name like 'mcp.example.com' (letters, digits and '-', at least one dot, no trailing dot)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii() or not _is_dns_name(value.lower(), 2):
            self.fail(value)
        return value.lower()


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Address(Kind):
    """What SSH or nginx connects to: an IP address or a DNS name (a single label is fine)."""

    expected = "an IP address or a DNS name (IPv6 without brackets)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii():
            self.fail(value)
        ip = _ip(value)
        if ip:
            return ip
        if not _is_dns_name(value.lower(), 1):
            self.fail(value)
        return value.lower()


class IpAddress(Kind):
    """An IP address (a Docker ``-p`` binding takes no name)."""

    expected = "an IP address like '127.0.0.1' or '::1' (IPv6 without brackets)"

    def __call__(self, value, ctx):
        ip = _ip(value) if isinstance(value, str) and value.isascii() else None
        if ip is None:
            self.fail(value)
        return ip


class Email(Kind):
    expected = "an email address like 'ops@example.com'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or value.count("@") != 1 or len(value) > 254:
            self.fail(value)
        local, domain = value.split("@")
        # Narrower than RFC 5322 on purpose: the address lands in certbot's
        # command line and its renewal file; these characters are safe in both.
        if not re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}", local, re.ASCII) or not _is_dns_name(domain.lower(), 2):
            self.fail(value)
        return f"{local}@{domain.lower()}"


# What a URL path and query may hold: RFC 3986 unreserved and a few sub-delims.
# No quote, space, ';' or '#': the URL lands in shell words, certbot's files and nginx.
_URL_REST = re.compile(r"[A-Za-z0-9._~%/:@=&?+-]*", re.ASCII)


class HttpsUrl(Kind):
    expected = "an https:// URL (host, optional port and path)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii() or len(value) > 2048:
            self.fail(value)
        try:
            parts = urlsplit(value)
            port = parts.port  # raises ValueError for a port out of range
            host = parts.hostname
        except ValueError:
            self.fail(value)
        if parts.scheme != "https" or not host or parts.username or parts.password or parts.fragment:
            self.fail(value)
        if not (_ip(host) or _is_dns_name(host, 1)) or (port is not None and not 1 <= port <= 65535):
            self.fail(value)
        rest = value[len(f"https://{parts.netloc}"):]
        if not _ascii_fullmatch(_URL_REST, rest):
            self.fail(value)
        return value


ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


class AcmeServer(HttpsUrl):
    """``letsencrypt``, ``letsencrypt-staging`` or an https ACME directory URL -> URL."""

    expected = "'letsencrypt', 'letsencrypt-staging' or an https:// ACME directory URL"

    def __call__(self, value, ctx):
        if value in ACME_DIRECTORIES:
            return ACME_DIRECTORIES[value]
        if isinstance(value, str) and value.lower().startswith("http://"):
            raise _Invalid(f"ACME server must be https, got {_show(value)}")
        return super().__call__(value, ctx)


class Cidr(Kind):
    """An IP network; a bare IP means /32 (IPv4) or /128 (IPv6). Normalized string."""

    expected = "an IP network like '10.0.0.0/8' or '2001:db8::/32' (or a bare IP address)"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or not value.isascii():
            self.fail(value)
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            self.fail(value)


_ORIGIN = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?/?", re.ASCII)


class Origin(Kind):
    """A browser origin: ``https://host[:port]``, lowercased, no path (it lands in an nginx map)."""

    expected = "an origin like 'https://claude.ai' (scheme and host, optional port, no path)"

    def __call__(self, value, ctx):
        if not isinstance(value, str):
            self.fail(value)
        m = _ORIGIN.fullmatch(value.strip().lower())
        if not m:
            self.fail(value)
        scheme, host, port = m.groups()
        bare = host.strip("[]")
        if host.startswith("["):
            if not _ip(bare) or ":" not in bare:
                self.fail(value)
        elif not (_ip(host) or _is_dns_name(host, 1)):
            self.fail(value)
        if port is not None and not 1 <= int(port) <= 65535:
            self.fail(value)
        return f"{scheme}://{host}" + (f":{int(port)}" if port else "")


_IMAGE = re.compile(
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?",
    re.ASCII)


class ImageRef(Kind):
    expected = "a Docker image reference like 'python:3.11-slim' or 'registry.example.com/app:1.2'"

    def __call__(self, value, ctx):
        if not isinstance(value, str) or len(value) > 255 or not _IMAGE.fullmatch(value):
            self.fail(value)
        return value


class UserName(Str):
    def __init__(self):
        super().__init__(r"[a-z_][a-z0-9_-]{0,31}", "a user name (lowercase letters, digits, '_', '-'; 32 at most)")


_ARG_SHELL = re.compile(r"[|&;<>()$`\\\"'*?\[\]#{}]")


class Command(Kind):
    """The argv of a program the bundle starts (never through a shell): a list
    of strings, or one string split on spaces. A string with shell syntax is
    refused: no shell would interpret it, so it could only mislead."""

    expected = "a command: a list of arguments like [node, /opt/server.js], or a string of plain words"

    def __call__(self, value, ctx):
        if isinstance(value, str):
            if _ARG_SHELL.search(value):
                raise _Invalid(f"{_show(value)} has shell syntax, but no shell runs the command: give a list of "
                               "arguments (or, if a shell is really meant, [sh, -c, '...'])")
            value = value.split()
        if not isinstance(value, list) or not value or len(value) > 256:
            self.fail(value)
        for i, arg in enumerate(value):
            if not isinstance(arg, str) or len(arg) > 4096:
                raise _Invalid(f"expected a string argument, got {_show(arg)}", at=f"[{i}]")
        program = value[0]
        if not (re.fullmatch(r"[A-Za-z0-9._+-]+", program, re.ASCII) or program.startswith("/")):
            raise _Invalid(f"the program must be a name on PATH or an absolute path, got {_show(program)}", at="[0]")
        if program.startswith("/"):
            try:
                AbsPath()(program, ctx)
            except _Invalid as e:
                raise _Invalid(e.message, at="[0]") from None
        return list(value)


class GroupName(Kind):
    """A host group: one with a section in the settings table (checked at load time).

    ``groups`` lists them when a value is checked (``schema.known_groups``):
    the kind does not import the table it is part of."""

    expected = "a host group"

    def __init__(self, groups: Callable[[], list[str]]):
        self.groups = groups

    def __call__(self, value, ctx):
        known = self.groups()
        if isinstance(value, str) and value in known:
            return value
        raise _Invalid(f"unknown group {_show(value)} (known groups: {', '.join(known)})")
