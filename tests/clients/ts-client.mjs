#!/usr/bin/env node
// The official TypeScript SDK's Client, as a program would use it: connect over
// Streamable HTTP or legacy SSE, list the tools, call one, close.
//
// Driven by tests/clients/run.py. It reads one JSON object on stdin (so no header value is
// ever on a command line):
//   {"url": "...", "transport": "streamable-http" | "sse", "headers": {...},
//    "call": ["echo", {"text": "hi"}] | null, "timeout_ms": 60000}
// and prints one JSON line on stdout: {"tools": [names], "call": text | null,
// "server": serverInfo, "protocol": negotiated version}. Errors go to stderr, exit 1.
// A private CA is trusted through NODE_EXTRA_CA_CERTS (read by Node at start-up).
import { readFileSync } from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const spec = JSON.parse(readFileSync(0, 'utf8'));
const timeoutMs = Number(spec.timeout_ms) > 0 ? Number(spec.timeout_ms) : 60000;
// The whole run is bounded, whatever the transport does.
setTimeout(() => {
  console.error(`ts-client: no result within ${timeoutMs} ms`);
  process.exit(3);
}, timeoutMs).unref();

async function main() {
  const url = new URL(spec.url);
  const headers = spec.headers || {};
  let transport;
  if (spec.transport === 'sse') {
    // requestInit.headers reach both the GET that opens the stream and every message POST.
    transport = new SSEClientTransport(url, { requestInit: { headers } });
  } else if (spec.transport === 'streamable-http') {
    transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
  } else {
    throw new Error(`unknown transport ${spec.transport}`);
  }
  const client = new Client({ name: 'mcp-edge-tests', version: '1.0.0' });
  await client.connect(transport, { timeout: timeoutMs });
  try {
    const listed = await client.listTools(undefined, { timeout: timeoutMs });
    let text = null;
    if (spec.call) {
      const [name, args] = spec.call;
      const result = await client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs });
      if (result.isError) throw new Error(`tool ${name} returned an error: ${JSON.stringify(result.content)}`);
      text = (result.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('');
    }
    process.stdout.write(JSON.stringify({
      tools: listed.tools.map((t) => t.name),
      call: text,
      server: client.getServerVersion() || null,
      protocol: transport.protocolVersion || null,
    }) + '\n');
  } finally {
    await client.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`ts-client: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
