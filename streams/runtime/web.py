"""/metrics, /healthz and /readyz for the fast runtime (faust serves its own).

A stdlib HTTP server in a daemon thread: three fixed paths, no request data is
ever logged (G6), and it must not compete with the decision loop for the GIL
beyond the scrape itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streams import metrics


def serve(bind: str, port: int, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                body, code, ctype = metrics.exposition(), 200, "text/plain; version=0.0.4"
            elif self.path == "/healthz":
                body, code, ctype = b'{"status": "ok"}', 200, "application/json"
            elif self.path == "/readyz":
                ok = ready()
                metrics.READY.set(1 if ok else 0)
                body = b'{"ready": true}' if ok else b'{"ready": false}'
                code, ctype = (200 if ok else 503), "application/json"
            else:
                body, code, ctype = b"not found", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # no access log
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="pfilter-web", daemon=True).start()
    return server
