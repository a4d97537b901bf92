"""The fan-out worker's web port: /metrics, /healthz and /coverage, served from a thread.

The pages read only what the loop's thread publishes whole (gauges, a coverage snapshot,
a few plain attributes), so serving them never touches the state stores.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Page = Callable[[], tuple[int, dict[str, object]]]


def serve(host: str, port: int, registry: CollectorRegistry, pages: dict[str, Page]) -> ThreadingHTTPServer:
    """Start the server in a daemon thread and return it (``server_address`` has the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(registry)
                self._send(200, CONTENT_TYPE_LATEST, body)
                return
            page = pages.get(path)
            if page is None:
                self._send(404, "application/json", b'{"detail": "not found"}')
                return
            status, doc = page()
            self._send(status, "application/json", json.dumps(doc, sort_keys=True).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return  # scrapes every few seconds are not news

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fanout-web", daemon=True).start()
    return server


def health(
    ready: Callable[[], bool],
    last_loop: Callable[[], float],
    detail: Callable[[], dict[str, object]],
    stall_after: float = 30.0,
    problem: Callable[[], str | None] | None = None,
) -> Page:
    """``/healthz``: 200 once partitions are assigned and restored and the loop turns; 503 otherwise, and
    503 ``degraded`` with the reason while ``problem`` names one (a stale registry)."""

    def page() -> tuple[int, dict[str, object]]:
        stalled = time.monotonic() - last_loop()
        ok = ready() and stalled < stall_after
        status = "ok" if ok else ("stalled" if ready() else "starting")
        why = problem() if problem is not None and ok else None
        if why is not None:
            return 503, {"status": "degraded", "detail": why, "loop_seconds_ago": round(stalled, 3), **detail()}
        return (200 if ok else 503), {"status": status, "loop_seconds_ago": round(stalled, 3), **detail()}

    return page
