"""Bench client that runs INSIDE a bench target (python3 + a copy of httpx/h2),
so direct upstream, deployed proxy and "before" proxy are measured from the
same place, over loopback, with no Docker port forwarding in the path.

    python3 probe.py delays URL --host H [--http2] [--count N] [--interval MS] [--uds SOCKET]
    python3 probe.py sessions URL --host H --count N [--uds SOCKET] [--clients K] [--pace S]
    python3 probe.py idle URL --host H --streams N --seconds S
    python3 probe.py streams HOST PORT --sni H --steps 100,1000 --rate R --window S
    python3 probe.py hold URL --host H --streams N   (continuity: reads commands on stdin)

Every loop is bounded; results are one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import threading
import time
from urllib.parse import urljoin

import httpx

from mcpedge.sse import iter_events  # copied into the target beside httpx (see run.install)

PROTOCOL_VERSION = "2025-06-18"
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE  # loopback inside the target; the cert is checked by verify


def client(host: str, http2: bool = False, read: float | None = None, uds: str | None = None,
           local: str | None = None) -> httpx.Client:
    """``uds``: talk to the gateway's unix socket directly (the "direct upstream" baseline).
    ``local``: the loopback source address (127.0.0.N): nginx then sees one client per
    address, as it would see users on the internet, each under its own session cap."""
    transport = httpx.HTTPTransport(uds=uds, http2=http2) if uds else (
        httpx.HTTPTransport(local_address=local, http2=http2) if local else None)
    return httpx.Client(verify=CTX, http2=http2, timeout=httpx.Timeout(10, read=read), transport=transport,
                        headers={"Host": host, "Accept-Encoding": "gzip"})


class Sse:
    """GET /sse, then POST JSON-RPC to the endpoint it announces."""

    def __init__(self, c: httpx.Client, base: str, endpoint_timeout: float = 5):
        self.c, self.base = c, base
        box = {}

        def send():  # a buffering proxy may hold even the response headers
            try:
                box["resp"] = c.send(c.build_request("GET", urljoin(base, "/sse"),
                                                     headers={"Accept": "text/event-stream"}), stream=True)
            except Exception as exc:  # noqa: BLE001
                box["err"] = exc

        t0 = time.time()
        t = threading.Thread(target=send, daemon=True)
        t.start()
        t.join(endpoint_timeout)
        if "err" in box:
            raise box["err"]
        if "resp" not in box:
            raise TimeoutError("response headers held")
        self.resp = box["resp"]
        endpoint_timeout = max(0.01, endpoint_timeout - (time.time() - t0))
        self.events = iter_events(self.resp.iter_lines())
        self.http_version = self.resp.http_version
        # Ids unique across sessions: the "before" gateway (Supergateway's SSE mode)
        # shares one stdio server between sessions, so another session's reply may show up.
        self.next_id = int.from_bytes(os.urandom(4), "big") * 1000
        ev, data, _ = self.event(endpoint_timeout)
        if ev != "endpoint":
            raise RuntimeError(f"first event {ev!r}")
        self.endpoint = urljoin(base, data.strip())

    def event(self, timeout: float | None = None):
        """(event, data, received) of the next event; raises TimeoutError when none comes in time."""
        result = {}

        def read():
            try:
                for ev, data in self.events:
                    result["ev"] = (ev, data, time.time())
                    return
                result["eof"] = time.time()
            except Exception as exc:  # noqa: BLE001
                result["err"] = exc

        if timeout is None:
            read()
        else:
            t = threading.Thread(target=read, daemon=True)
            t.start()
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError
        if "ev" in result:
            return result["ev"]
        raise EOFError(result.get("err") or "stream ended")

    def post(self, method, params=None, notification=False):
        msg = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if not notification:
            self.next_id += 1
            msg["id"] = self.next_id
        r = self.c.post(self.endpoint, json=msg)
        r.raise_for_status()
        return msg.get("id")

    def wait(self, msg_id, on_event=None, timeout=30):
        deadline = time.time() + timeout
        while True:
            ev, data, received = self.event(max(0.01, deadline - time.time()))
            msg = json.loads(data)
            if msg.get("id") == msg_id and ("result" in msg or "error" in msg):
                return msg
            if on_event:
                on_event(msg, received)

    def initialize(self):
        self.wait(self.post("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                           "clientInfo": {"name": "mcp-edge-bench", "version": "1"}}))
        self.post("notifications/initialized", notification=True)

    def close(self):
        self.resp.close()


def delays(url, host, http2=False, count=1000, interval=5, uds=None):
    """The demo server's `ticks` tool: `count` events, each with its send time."""
    out = {"url": url, "http2": http2, "count": count, "interval_ms": interval, "delays_ms": [], "held": 0}
    c = client(host, http2, uds=uds)
    try:
        s = Sse(c, url)
    except (TimeoutError, httpx.TimeoutException):
        # Not closed: closing an HTTP/2 connection with a held stream blocks; the process ends anyway.
        out.update(held=count, delays_ms=[], note="endpoint event never delivered: every event held by the proxy")
        return out
    try:
        out["http_version"] = s.http_version
        out["content_encoding"] = s.resp.headers.get("content-encoding")
        try:
            s.initialize()

            def on_event(msg, received):
                data = (msg.get("params") or {}).get("data")
                if isinstance(data, dict) and "sent_at_ms" in data:
                    out["delays_ms"].append(received * 1000 - data["sent_at_ms"])

            s.wait(s.post("tools/call", {"name": "ticks", "arguments": {"count": count, "interval_ms": interval}}),
                   on_event, timeout=count * interval / 1000 + 20)
        except TimeoutError:
            pass
        finally:
            s.close()
    finally:
        c.close()
    # An event later than 1 s is held (released only with later traffic), not "slow".
    late = [d for d in out["delays_ms"] if d > 1000]
    out["delays_ms"] = [d for d in out["delays_ms"] if d <= 1000]
    out["held"] = count - len(out["delays_ms"])
    out["late"] = len(late)
    return out


def idle(url, host, streams=10, seconds=65.0, address_base=20):
    """Open `streams` SSE streams, stay silent `seconds`, then see which still work.
    A stream whose endpoint event is held can only be judged on its connection.
    Stream i comes from 127.0.0.(address_base + i): a client of its own."""
    results = [None] * streams

    def one(i):
        c = client(host, read=None, local=f"127.0.0.{address_base + i}")
        opened = time.time()
        try:
            s = Sse(c, url)
        except (TimeoutError, httpx.HTTPError):
            s = None
        if s is None:  # (c is never closed here: closing a held HTTP/2 stream blocks)
            ended = {}

            def watch():
                try:
                    with c.stream("GET", urljoin(url, "/sse"), headers={"Accept": "text/event-stream"}) as r:
                        for _ in r.iter_bytes():
                            pass
                except Exception:  # noqa: BLE001
                    pass
                ended["at"] = time.time() - opened

            threading.Thread(target=watch, daemon=True).start()
            time.sleep(seconds)
            results[i] = {"alive": "at" not in ended, "dropped_after_s": ended.get("at"), "endpoint_held": True}
            return
        try:
            s.initialize()
            time.sleep(seconds)  # silence both ways
            r = s.wait(s.post("tools/call", {"name": "echo", "arguments": {"text": "alive"}}), timeout=10)
            ok = ((r.get("result") or {}).get("content") or [{}])[0].get("text") == "alive"
            results[i] = {"alive": ok} if ok else {"alive": False, "reply": json.dumps(r)[:300],
                                                   "dropped_after_s": None}
        except Exception as exc:  # noqa: BLE001
            results[i] = {"alive": False, "error": repr(exc)[:200], "dropped_after_s": time.time() - opened}
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
        time.sleep(0.1)  # stay under the per-IP POST rate limit
    for t in threads:
        t.join(seconds + 60)
    alive = sum(1 for r in results if r and r["alive"])
    return {"url": url, "streams": streams, "seconds": seconds, "alive": alive, "results": results}


def hold(url, host, streams=20, address_base=100):
    """Continuity: hold `streams` SSE sessions (each from its own loopback address); on
    each stdin line `check`, prove each still answers; print a JSON line per check; `quit` ends."""
    sessions = []
    for i in range(streams):
        s = Sse(client(host, read=None, local=f"127.0.0.{address_base + i}"), url)
        s.initialize()
        sessions.append(s)
    print(json.dumps({"ready": len(sessions)}), flush=True)
    for line in sys.stdin:
        if line.strip() != "check":
            break
        ok = 0
        for s in sessions:
            try:
                r = s.wait(s.post("tools/call", {"name": "echo", "arguments": {"text": "x"}}), timeout=10)
                ok += r["result"]["content"][0]["text"] == "x"
            except Exception:  # noqa: BLE001
                pass
        print(json.dumps({"alive": ok, "streams": len(sessions)}), flush=True)
    for s in sessions:
        s.close()
    return None


def sessions(url, host, count, uds=None, clients=1, pace=0.0):
    """Open `count` Streamable HTTP sessions (initialize + initialized) and never
    close one, as clients that send no DELETE do. ``clients`` > 1 spreads them over
    that many client keys (X-MCP-Edge-Client, honoured only on the gateway's own
    socket). Bounded: `count` requests. Prints statuses and the session ids kept."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    statuses, sids, t0 = [], [], time.time()
    c = client(host, uds=uds, read=30)
    try:
        for i in range(count):
            h = dict(base, **({"X-MCP-Edge-Client": f"bench-{i % clients}"} if clients > 1 else {}))
            try:
                r = c.post(urljoin(url, "/mcp"), json=init, headers=h)
                statuses.append(r.status_code)
                sid = r.headers.get("mcp-session-id")
                if r.status_code == 200 and sid:
                    sids.append(sid)
                    c.post(urljoin(url, "/mcp"), headers=dict(h, **{"Mcp-Session-Id": sid,
                                                                   "MCP-Protocol-Version": PROTOCOL_VERSION}),
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
            if pace:
                time.sleep(pace)
    finally:
        c.close()
    counts = {}
    for st in statuses:
        counts[str(st)] = counts.get(str(st), 0) + 1
    return {"count": count, "statuses": counts, "seconds": round(time.time() - t0, 2), "sessions": len(sids)}


# --- Many streams: raw asyncio, one event per stream now and then -------------------

def _pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def _nginx_kib():
    """Proportional set size of all nginx processes (KiB)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "nginx":
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def _streams(host, port, sni, steps, rate, window, emitter_port, direct):
    samples: list[float] = []
    recording = {"on": False}
    conns = []
    errors = {"connect": 0, "eof": 0, "status": 0}

    async def reader(r):
        try:
            while True:
                line = await r.readline()
                if not line:
                    errors["eof"] += 1
                    return
                if line.startswith(b"data: ") and recording["on"]:
                    samples.append(time.time() * 1000 - float(line[6:]))
        except Exception:  # noqa: BLE001
            errors["eof"] += 1

    async def open_one(sem):
        async with sem:
            try:
                if direct:
                    r, w = await asyncio.open_connection("127.0.0.1", emitter_port)
                else:
                    r, w = await asyncio.open_connection(host, port, ssl=CTX, server_hostname=sni)
                w.write(f"GET /stream HTTP/1.1\r\nHost: {sni}\r\nAccept: text/event-stream\r\n"
                        f"Accept-Encoding: gzip\r\n\r\n".encode())
                status = await asyncio.wait_for(r.readline(), 30)
                if b" 200 " not in status:
                    errors["status"] += 1
                    w.close()
                    return
                while (await r.readline()) not in (b"\r\n", b""):
                    pass
                conns.append((w, asyncio.ensure_future(reader(r))))
            except Exception:  # noqa: BLE001
                errors["connect"] += 1

    base_mem = _nginx_kib()
    out = []
    sem = asyncio.Semaphore(100)
    for n in steps:
        t0 = time.time()
        await asyncio.gather(*(open_one(sem) for _ in range(n - len(conns))))
        opened = time.time() - t0
        await asyncio.sleep(1)
        samples.clear()
        recording["on"] = True
        await asyncio.sleep(window)
        recording["on"] = False
        mem = _nginx_kib()
        live = len(conns) - errors["eof"]
        out.append({"target": n, "open": live, "errors": dict(errors), "open_seconds": round(opened, 1),
                    "events": len(samples), "p50_ms": _pct(samples, 50), "p99_ms": _pct(samples, 99),
                    "nginx_kib": mem, "kib_per_stream": round((mem - base_mem) / max(live, 1), 1)})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
        if live < n * 0.99:
            break
    for w, task in conns:
        task.cancel()
        w.close()
    return {"steps": out, "base_nginx_kib": base_mem, "rate": rate, "window": window}


def main(argv):
    cmd, args = argv[0], argv[1:]
    opts = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            key = args[i][2:]
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                opts[key] = args[i + 1]
                i += 2
            else:
                opts[key] = True
                i += 1
        else:
            pos.append(args[i])
            i += 1
    if cmd == "delays":
        res = delays(pos[0], opts["host"], bool(opts.get("http2")), int(opts.get("count", 1000)),
                     int(opts.get("interval", 5)), opts.get("uds"))
    elif cmd == "sessions":
        res = sessions(pos[0], opts["host"], int(opts["count"]), opts.get("uds"), int(opts.get("clients", 1)),
                       float(opts.get("pace", 0)))
    elif cmd == "idle":
        res = idle(pos[0], opts["host"], int(opts.get("streams", 10)), float(opts.get("seconds", 65)),
                   int(opts.get("address-base", 20)))
    elif cmd == "hold":
        res = hold(pos[0], opts["host"], int(opts.get("streams", 20)), int(opts.get("address-base", 100)))
    elif cmd == "streams":
        steps = [int(x) for x in opts["steps"].split(",")]
        res = asyncio.run(_streams(pos[0], int(pos[1]), opts["sni"], steps, float(opts.get("rate", 1000)),
                                   float(opts.get("window", 5)), int(opts.get("emitter-port", 9100)),
                                   bool(opts.get("direct"))))
    else:
        raise SystemExit(__doc__)
    if res is not None:
        print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # threads blocked on held streams must not keep the process alive
