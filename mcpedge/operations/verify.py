"""Verification: the public endpoint, checked from this machine after every apply."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from pyinfra import host, state
from pyinfra.api import FunctionCommand, operation

from .. import pyinfra_compat
from ..settings import reveal

_REPO = Path(__file__).resolve().parents[2]
VERIFY_TOKEN_ENV = "MCP_EDGE_VERIFY_TOKEN"  # = mcpedge.verify.TOKEN_ENV (that module needs the MCP SDK)
_log = logging.getLogger("pyinfra")


def _verification_failed(state, host, message):
    host.log_styled(message, fg="red", log_func=_log.error)
    return False  # fails the operation, hence the host and the run


@operation(is_idempotent=True)
def verify_endpoint(url, ca_file=None, cert_min_days=0, timeout=10, token=None, allow_listed=False, attempts=2):
    """
    Check a public MCP endpoint from the control machine (``python -m mcpedge.verify``):
    TLS chain and expiry, /health, SSE and Streamable HTTP with the MCP SDK, events
    not held back by the proxy. Never a change: nothing happens in a dry run, and a
    passing check executes no command, so it stays out of change tables and drift checks.

    + url: the public https base URL
    + ca_file: local PEM file to trust (private CAs)
    + cert_min_days: fail when the certificate expires sooner
    + timeout: seconds per connection and MCP step
    + token: bearer token for a gated site; handed over in the environment, never argv
    + allow_listed: the site has an IP allow-list; if it refuses this machine the MCP
      checks are logged as skipped instead of failing
    + attempts: a failure is retried once after 2 s (an nginx reload finishes asynchronously)

    A failure fails the host with the check's name and the likely cause. In a drift
    check's dry run (its collector observes the run: ``mcpedge.pyinfra_compat.observer``)
    the endpoint is verified too and the outcome recorded for the report instead.
    """
    drift = None if state.is_executing else pyinfra_compat.observer("drift")
    in_drift_check = not state.is_executing  # a dry run: only the drift check verifies in one
    if in_drift_check and drift is None:
        host.noop(f"{url} is verified after the apply")
        return
    cmd = [sys.executable, "-m", "mcpedge.verify", url, "--cert-min-days", str(cert_min_days),
           "--timeout", str(timeout)]
    if ca_file:
        cmd += ["--ca-file", ca_file]
    if allow_listed:
        cmd.append("--allow-listed")
    env = {k: v for k, v in os.environ.items() if k != VERIFY_TOKEN_ENV}
    if token:
        env[VERIFY_TOKEN_ENV] = reveal(token)
    for attempt in range(attempts):
        if attempt:
            time.sleep(2)
        try:
            res = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True, timeout=timeout * 12)
        except subprocess.TimeoutExpired:
            message = f"verify {url}: no result within {timeout * 12:g} s"
            continue
        if res.returncode == 0:
            for line in res.stdout.splitlines():
                if line.startswith("SKIPPED"):
                    host.log_styled(f"verify {url}: {line}", fg="yellow", log_func=_log.warning)
                else:
                    host.log(f"verify {url}: {line}")
            message = None
            break
        message = f"verify {url}: {(res.stderr.strip().splitlines() or ['exit ' + str(res.returncode)])[-1]}"
    if in_drift_check:
        drift.record_verify(host.name, {"url": url, "ok": message is None, "error": message})
        host.noop(f"{url} verified" if message is None else message)
        return
    if message is not None:
        yield FunctionCommand(_verification_failed, (message,), {})
