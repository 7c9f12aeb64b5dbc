"""mcp-edge gateway: one stdio MCP server behind HTTP, one child process per session.

What: serves a stdio MCP server (newline-delimited JSON-RPC on stdin/stdout) over
both HTTP transports: legacy HTTP+SSE (`GET /sse` + `POST /message`, 2024-11-05) and
Streamable HTTP (`/mcp`, 2025-03-26 and later), plus `/health` and `/status`.

Why: a stdio server is written for one client. Sharing one child between users leaks
one user's responses, log level, subscriptions and notifications to the others
(Supergateway's SSE mode writes every output line to every session). So every MCP
session gets its own child, and sessions are capped per client key and in total,
so that one client cannot exhaust the host.

How to run (socket-activated by systemd on fd 3, or on an explicit address), with
this package's parent directory on PYTHONPATH:
    python3 -m mcp_edge_gateway --config /etc/mcp-edge/servers/NAME.json
    python3 -m mcp_edge_gateway --config demo.json --listen 127.0.0.1:8080
    python3 -m mcp_edge_gateway --config demo.json --listen unix:/run/demo.sock

Modules: :mod:`.protocol` (JSON-RPC replies, limits), :mod:`.config` (the
config the deploy writes), :mod:`.sessions` (a session and its child, the pool
and its caps), :mod:`.http` (the routes of both transports), ``__main__``
(listening, signals).
Needs Python 3.11+ and aiohttp 3.8+ (Debian's python3-aiohttp), nothing else.
"""
