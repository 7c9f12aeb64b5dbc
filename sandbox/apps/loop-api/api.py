"""Stand-in for loop-api: a small HTTP API reading the vault mounts."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open(os.path.join(os.path.dirname(__file__), "VERSION")).read().strip()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = {"status": "ok"}
        elif self.path.startswith("/api/"):
            body = {"service": "loop-api", "version": VERSION, "vault": os.environ.get("VAULT_DIR"),
                    "vault_entries": sorted(os.listdir(os.environ.get("VAULT_DIR", "/vault")))[:20],
                    "tz": os.environ.get("TZ")}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        # What many real app stacks send (Express, PHP, ASP.NET): the proxy must not pass it on.
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", 8081), Handler).serve_forever()
