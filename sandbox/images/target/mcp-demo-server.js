#!/usr/bin/env node
// A small stdio MCP server (newline-delimited JSON-RPC 2.0, no dependencies):
// the operator's app on the bench target, wrapped by Supergateway.
// Tools: echo, add, ticks (emits `count` log notifications every `interval_ms`,
// each carrying its send time, so a client can measure what the proxy adds).
'use strict';
const readline = require('readline');

const TOOLS = [
  { name: 'echo', description: 'Return the given text.',
    inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } },
  { name: 'add', description: 'Add two numbers.',
    inputSchema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] } },
  { name: 'ticks', description: 'Emit timestamped notifications on a timer, then return.',
    inputSchema: { type: 'object', properties: { count: { type: 'integer' }, interval_ms: { type: 'integer' } } } },
];

function send(msg) { process.stdout.write(JSON.stringify(msg) + '\n'); }
function text(t) { return { content: [{ type: 'text', text: String(t) }] }; }

function callTool(id, name, args) {
  if (name === 'echo') return send({ jsonrpc: '2.0', id, result: text(args.text) });
  if (name === 'add') return send({ jsonrpc: '2.0', id, result: text(Number(args.a) + Number(args.b)) });
  if (name === 'ticks') {
    // Bounded: at most 2000 events, at least 5 ms apart.
    const count = Math.min(Math.max(parseInt(args.count || 5, 10), 1), 2000);
    const interval = Math.max(parseInt(args.interval_ms || 200, 10), 5);
    let seq = 0;
    const timer = setInterval(() => {
      seq += 1;
      send({ jsonrpc: '2.0', method: 'notifications/message',
             params: { level: 'info', logger: 'ticks', data: { seq, sent_at_ms: Date.now() } } });
      if (seq >= count) {
        clearInterval(timer);
        send({ jsonrpc: '2.0', id, result: text(`sent ${count} ticks`) });
      }
    }, interval);
    return;
  }
  send({ jsonrpc: '2.0', id, result: { isError: true, ...text(`unknown tool ${name}`) } });
}

function handle(msg) {
  const { id, method, params = {} } = msg;
  if (id === undefined || id === null) return; // notifications need no answer
  switch (method) {
    case 'initialize':
      return send({ jsonrpc: '2.0', id, result: {
        protocolVersion: params.protocolVersion || '2025-06-18',
        capabilities: { tools: {}, logging: {} },
        serverInfo: { name: 'mcp-demo', version: '1.0.0' } } });
    case 'ping': return send({ jsonrpc: '2.0', id, result: {} });
    case 'logging/setLevel': return send({ jsonrpc: '2.0', id, result: {} });
    case 'tools/list': return send({ jsonrpc: '2.0', id, result: { tools: TOOLS } });
    case 'tools/call': return callTool(id, params.name, params.arguments || {});
    default: return send({ jsonrpc: '2.0', id, error: { code: -32601, message: `method not found: ${method}` } });
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let msg;
  try { msg = JSON.parse(line); } catch (e) {
    return send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } });
  }
  (Array.isArray(msg) ? msg : [msg]).forEach(handle);
}).on('close', () => process.exit(0));
