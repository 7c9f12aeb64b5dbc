#!/usr/bin/env bash
# Install what the bench needs on a bare Debian/Ubuntu machine (run as root).
# The Docker daemon is started by the bench itself when none answers.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v openssl >/dev/null || need+=(openssl)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v make >/dev/null || need+=(make)
command -v shellcheck >/dev/null || need+=(shellcheck)     # tests/unit/test_scripts.py
command -v node >/dev/null || need+=(nodejs)             # the demo MCP server of the unit tests
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
    echo "[setup] installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
