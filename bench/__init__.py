"""mcp-edge performance bench, against the sandbox (`make sandbox`).

    make bench                      # = .venv/bin/python -m bench
    .venv/bin/python -m bench --hosts 8 --long-idle --skip-fresh

Prints a markdown table, writes bench/results/<UTC time>.{json,md,png} and the
latest table and plot to bench/RESULTS.md and bench/latest.png. Clients that
measure event delays run inside the target (loopback; a copy of httpx/h2 from
this venv), so direct upstream, deployed proxy and the "before" proxy are seen
from the same place with no Docker port forwarding in the path. Everything the
bench adds to the target (a bench-only nginx file, an emitter, /opt/mcp-edge-bench)
is removed at the end.
"""
