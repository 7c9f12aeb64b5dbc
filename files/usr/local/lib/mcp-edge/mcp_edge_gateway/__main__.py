"""Start the gateway: python3 -m mcp_edge_gateway --config FILE [--listen ADDRESS]."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from aiohttp import web

from . import __doc__ as _doc
from .config import Config, ConfigError
from .http import Gateway
from .protocol import log


def make_site(runner: web.AppRunner, listen: str | None) -> web.BaseSite:
    """The socket systemd passed on fd 3 if LISTEN_PID/LISTEN_FDS say so, else --listen."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS", "0") != "0":
        return web.SockSite(runner, socket.socket(fileno=3))
    if listen is None:
        raise ConfigError("no socket from systemd and no --listen")
    if listen.startswith("unix:"):
        return web.UnixSite(runner, listen[5:])
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: expected unix:/path or HOST:PORT")
    return web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)


async def serve(config: Config, listen: str | None) -> None:
    gateway = Gateway(config)
    runner = web.AppRunner(gateway.make_app(), access_log=None)  # the access log would show session ids
    await runner.setup()
    await make_site(runner, listen).start()
    addresses = [f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a) for a in runner.addresses]
    log.info("listening on %s", " ".join(addresses))  # the real port, for --listen 127.0.0.1:0
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    sweeper = asyncio.ensure_future(gateway.pool.sweep())
    await stop.wait()
    log.info("stopping: ending %d sessions", len(gateway.pool.sessions))
    sweeper.cancel()
    await gateway.pool.close_all()  # this ends every stream too, so the cleanup below is quick
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runner.cleanup(), 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=_doc.splitlines()[0])
    parser.add_argument("--config", required=True, help="the server's JSON config")
    parser.add_argument("--listen", help="unix:/path or HOST:PORT, when systemd passes no socket")
    args = parser.parse_args(argv)
    try:
        config = Config.load(args.config)
    except ConfigError as e:
        print(f"mcp-edge-gateway: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"mcp-edge-gateway[{config.name}]: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    log.setLevel(config.log_level.upper())
    try:
        asyncio.run(serve(config, args.listen))
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except OSError as e:
        log.error("cannot listen: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
