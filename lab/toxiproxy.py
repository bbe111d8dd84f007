"""Toxiproxy (built from Go modules) in front of the lab's registries: latency, bandwidth and cut
connections on demand, through its HTTP API.

TLS passes through untouched (toxiproxy proxies TCP), and the lab's registry
certificate names 127.0.0.1, so a client reaches a registry through its proxy
at ``127.0.0.1:<listen port>`` and verifies it as usual.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from lab.binaries import ensure_tools
from lab.lab import Lab, http_status
from lab.processes import free_port
from lab.waiting import wait_for


class ToxiproxyError(RuntimeError):
    pass


class Toxiproxy:
    """One toxiproxy server, a daemon of ``lab`` called ``name``, with its API on a free loopback port."""

    def __init__(self, lab: Lab, name: str = "toxiproxy") -> None:
        self.lab = lab
        self.name = name
        self.api_port = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def up(self) -> Toxiproxy:
        binary = ensure_tools() / "server"
        self.lab.daemons.stop(self.name)
        self.api_port = free_port()
        self.lab.daemons.start(self.name, [str(binary), "-host", "127.0.0.1", "-port", str(self.api_port)])
        wait_for(lambda: http_status(f"{self.api}/version") == 200, "toxiproxy to answer", 30, interval=0.1,
                 explain=lambda: self.lab.daemons.log_tail(self.name))
        return self

    def down(self) -> None:
        self.lab.daemons.stop(self.name)

    def proxy(self, name: str, upstream: str) -> str:
        """Proxy ``upstream`` (``host:port``) as ``name``; returns the ``127.0.0.1:port`` to connect to."""
        listen = f"127.0.0.1:{free_port()}"
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        return listen

    def add_toxic(self, proxy: str, kind: str, attributes: dict[str, Any], *, stream: str = "downstream",
                  name: str | None = None, toxicity: float = 1.0) -> str:
        """Add a toxic (``latency``, ``bandwidth``, ``reset_peer``, ``limit_data``, ``timeout``...) to every
        connection of ``proxy``, new and open; returns its name."""
        name = name or f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {"name": name, "type": kind, "stream": stream,
                                                        "toxicity": toxicity, "attributes": attributes})
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        """Remove every toxic and enable every proxy."""
        self._call("POST", "/reset")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {error.code}: {error.read()[:200]!r}") from None
        return json.loads(payload) if payload.strip() else None
