"""Stand-in for loop-mcp: an MCP server written with the official MCP Python SDK.

Serves legacy SSE (/sse + /messages/) and Streamable HTTP (/mcp) from one
process. It sends no X-Accel-Buffering header itself: the proxy's settings are
what the bench tests. HTTP keep-alive timeout 300 s (longer than any proxy's).
"""
import asyncio
import contextlib
import os
import time

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

mcp = FastMCP("loop-mcp", host="0.0.0.0")  # not 127.0.0.1: no DNS-rebinding host check behind the proxy


@mcp.tool()
def echo(text: str) -> str:
    """Return the given text."""
    return text


@mcp.tool()
def vault_list() -> list[str]:
    """List the vault (mounted read-only)."""
    return sorted(os.listdir(os.environ.get("VAULT_DIR", "/vault")))[:50]


@mcp.tool()
async def ticks(ctx: Context, count: int = 5, interval_ms: int = 200) -> str:
    """Emit timestamped log notifications on a timer, then return."""
    count, interval = max(1, min(count, 2000)), max(5, interval_ms) / 1000
    for seq in range(1, count + 1):
        await asyncio.sleep(interval)
        await ctx.session.send_log_message(level="info", data={"seq": seq, "sent_at_ms": time.time() * 1000},
                                           logger="ticks", related_request_id=ctx.request_id)
    return f"sent {count} ticks"


async def health(request):
    return JSONResponse({"status": "ok"})


sse, http = mcp.sse_app(), mcp.streamable_http_app()


@contextlib.asynccontextmanager
async def lifespan(app):
    async with mcp.session_manager.run():
        yield


class NoAccelBuffering:
    """The SDK's SSE responses carry `X-Accel-Buffering: no`; drop it, so what
    reaches clients depends on the proxy's own settings (what the bench tests)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def strip(message):
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() != b"x-accel-buffering"]
            await send(message)

        await self.app(scope, receive, strip)


app = NoAccelBuffering(Starlette(routes=[Route("/health", health), *http.routes, *sse.routes], lifespan=lifespan))

if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=8085, timeout_keep_alive=300, log_level="warning")
