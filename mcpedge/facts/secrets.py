"""Files that hold secrets, read masked on the host."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


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
