#!/usr/bin/env python3
"""A provisioning gateway for benchmarks: answers every activation command
`{"id": ..., "state": "Completed"}` (oss-adapters/activation/README.md), HTTP/1.1
keep-alive, one thread per connection. A repeated request id is answered the same way,
as the adapter's contract asks. Usage: fake-gateway.py PORT (0 picks one; the port is
printed on the first line of stdout)."""
import http.server
import json
import sys


class Gateway(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(min(length, 1 << 20))
        request_id = self.headers.get("X-Request-Id", "")
        body = json.dumps({"id": "gw-" + request_id, "state": "Completed"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Gateway)
print(server.server_address[1], flush=True)
server.serve_forever()
