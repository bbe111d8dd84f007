"""The operability endpoint: ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 while the process's loops are alive (liveness);
``/readyz`` answers 200 when this replica is useful: a standby waiting for the
lease, or the leader once every informer cache has synced. Both return a short
plain-text reason on 503.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from imageclone_controller.metrics import CONTENT_TYPE

log = logging.getLogger("imageclone.server")

Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(render_metrics: Callable[[], str], healthz: Check, readyz: Check) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "image-clone"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, render_metrics(), CONTENT_TYPE)
            elif path in ("/healthz", "/livez"):
                self._check(healthz)
            elif path == "/readyz":
                self._check(readyz)
            else:
                self._send(404, "not found: try /metrics, /healthz or /readyz\n")

        def _check(self, check: Check) -> None:
            try:
                ok, reason = check()
            except Exception as error:  # noqa: BLE001
                ok, reason = False, f"check failed: {type(error).__name__}"
            self._send(200 if ok else 503, f"{reason}\n")

        def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request lines
            pass

    return Handler


class HealthServer:
    def __init__(self, address: tuple[str, int], render_metrics: Callable[[], str], healthz: Check,
                 readyz: Check) -> None:
        host, port = address
        server_class: type[_Server] = _Server
        if ":" in host:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self._server = server_class((host, port), _handler(render_metrics, healthz, readyz))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
