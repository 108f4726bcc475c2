"""A tiny HTTP server on the standard library (the wizard's real-build fixture)."""
import http.server
import os
import sys

MESSAGE = b"Hello from a wizard-built Python app!\n"


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(MESSAGE)


if __name__ == "__main__":
    if "--once" in sys.argv:
        sys.stdout.write(MESSAGE.decode())
        sys.exit(0)
    port = int(os.environ.get("PORT", "8000"))
    http.server.HTTPServer(("0.0.0.0", port), Hello).serve_forever()
