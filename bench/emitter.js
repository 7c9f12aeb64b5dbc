#!/usr/bin/env node
// Bench-only lightweight SSE upstream: GET /stream holds a stream open; a
// ticker sends `rate` events per second in total, round robin over the open
// streams, each carrying its send time (ms, microsecond precision), so a
// client can measure the delay the proxy adds while it holds many streams.
//   node emitter.js PORT RATE      (listens on 127.0.0.1 only)
'use strict';
const http = require('http');
const { performance } = require('perf_hooks');

const port = parseInt(process.argv[2] || '9100', 10);
const rate = Math.min(Math.max(parseInt(process.argv[3] || '1000', 10), 1), 20000); // bounded
const streams = [];
let next = 0;

http.createServer((req, res) => {
  if (req.url !== '/stream') { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  res.write(': open\n\n');
  streams.push(res);
  req.on('close', () => { const i = streams.indexOf(res); if (i >= 0) streams.splice(i, 1); });
}).listen(port, '127.0.0.1');

const TICK_MS = 10;
setInterval(() => {
  if (!streams.length) return;
  for (let k = 0; k < rate * TICK_MS / 1000; k++) {
    next = (next + 1) % streams.length;
    streams[next].write(`data: ${(performance.timeOrigin + performance.now()).toFixed(3)}\n\n`);
  }
}, TICK_MS);
