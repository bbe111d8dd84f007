"""A forward HTTP proxy on loopback that records every connection it carries, for the proxy tests.

It speaks what clients send a proxy: ``CONNECT host:port`` (a tunnel, how https goes through a
proxy) and absolute-form requests (``GET http://host:port/path``, how plain http does). With
``credentials`` it demands them in ``Proxy-Authorization`` (Basic) and answers 407 without them, as
a company's proxy does.

The proxy alone resolves host names, from ``hosts`` (name -> loopback address): a test that gives
the lab's components names only the proxy knows (``lab.lab.PROXIED_NAMES``) is sure that a
connection which reached one of them by name went through the proxy. Loopback IP literals are
connected to as they are; anything else is refused (502), so it never connects off the machine.

``connections`` lists what each client asked for, in order: the method, the target, the client's
``User-Agent`` and the status the proxy answered. The proxy's credentials are never recorded.
"""
from __future__ import annotations

import base64
import ipaddress
import socket
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

_HEAD_LIMIT = 65536
_CHUNK = 65536


@dataclass(frozen=True)
class ProxiedConnection:
    """One request a client made of the proxy; ``status`` 200 means it was carried."""

    method: str
    target: str  # host:port as the client named it
    user_agent: str
    status: int


class ForwardProxy:
    """The proxy on ``127.0.0.1:<port>``, serving until closed."""

    def __init__(self, hosts: Mapping[str, str], credentials: tuple[str, str] | None = None) -> None:
        self.hosts = {name.lower(): address for name, address in hosts.items()}
        self.credentials = credentials
        self._lock = threading.Lock()
        self._connections: list[ProxiedConnection] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"forward-proxy-{self.port}",
                                        daemon=True)
        self._thread.start()

    def url(self) -> str:
        """The proxy's URL for ``HTTPS_PROXY``/``HTTP_PROXY``, with its credentials when it wants some."""
        userinfo = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    @property
    def connections(self) -> list[ProxiedConnection]:
        with self._lock:
            return list(self._connections)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        head, early = _read_head(client)
        if head is None:
            return
        request_line, *header_lines = head.split("\r\n")
        method, _space, rest = request_line.partition(" ")
        target_text = rest.rpartition(" ")[0]
        headers = {name.strip().lower(): value.strip()
                   for name, _colon, value in (line.partition(":") for line in header_lines)}
        if method == "CONNECT":
            target = target_text
        else:
            parts = urlsplit(target_text)
            target = f"{parts.hostname}:{parts.port or 80}"
        status = self._status(headers, target)
        with self._lock:
            self._connections.append(ProxiedConnection(method, target, headers.get("user-agent", ""), status))
        if status != 200:
            extra = 'Proxy-Authenticate: Basic realm="lab"\r\n' if status == 407 else ""
            client.sendall(f"HTTP/1.1 {status} {_REASONS[status]}\r\n{extra}Content-Length: 0\r\n"
                           "Connection: close\r\n\r\n".encode())
            return
        host, _colon, port = target.rpartition(":")
        with socket.create_connection((self._address(host) or "", int(port)), timeout=10) as upstream:
            upstream.settimeout(None)
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(_origin_form(method, target_text, header_lines) + early)
                early = b""
            if early:
                upstream.sendall(early)
            _relay(client, upstream)

    def _status(self, headers: Mapping[str, str], target: str) -> int:
        if self.credentials is not None:
            expected = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {expected}":
                return 407
        host, _colon, port = target.rpartition(":")
        return 200 if port.isdigit() and self._address(host) else 502

    def _address(self, host: str) -> str | None:
        """Where ``host`` is: a name from ``hosts`` or a loopback literal; ``None`` for anything else."""
        host = host.strip("[]").lower()
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return self.hosts.get(host)
        return host if literal.is_loopback else None


_REASONS = {407: "Proxy Authentication Required", 502: "Bad Gateway"}


def _read_head(client: socket.socket) -> tuple[str | None, bytes]:
    """The request head and whatever bytes arrived after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(_CHUNK)
        if not chunk or len(data) > _HEAD_LIMIT:
            return None, b""
        data += chunk
    head, _blank, early = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), early


def _origin_form(method: str, url: str, header_lines: list[str]) -> bytes:
    """The request as the origin server expects it: path only, no proxy headers, one request per connection."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kept = [line for line in header_lines
            if line.partition(":")[0].strip().lower() not in ("proxy-authorization", "proxy-connection", "connection")]
    return "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""]).encode("latin-1")


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Bytes both ways until both sides are done."""
    def pump(source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                destination.sendall(data)
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (source, destination):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
