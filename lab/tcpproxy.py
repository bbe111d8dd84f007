"""A TCP forwarder on loopback that can be cut off like a network partition.

Tests put it between one client (a controller, a playbook) and a lab component
to stall that client alone. ``partition()`` makes every connection, open or
new, a black hole: bytes from either side are read and dropped, nothing is
answered, so the client waits until its own timeouts. Dropping (rather than
holding bytes back) is what a partition does to packets, and it guarantees
that a request sent during the partition never reaches the server later.
``heal()`` resets the connections that lived through the partition, as TCP
would after losing segments, and new connections forward normally again.
"""
from __future__ import annotations

import socket
import threading
from types import TracebackType

_CHUNK = 65536
_POLL = 0.2


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket | None, cut: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.cut = cut
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


class PartitionableProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` (host, port) until partitioned."""

    def __init__(self, target: tuple[str, int], *, downstream_rate: int | None = None) -> None:
        """``downstream_rate``: bytes per second per connection from the target back to the client,
        to play a slow registry (unlimited when None)."""
        self.target = target
        self._rate = downstream_rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._partitioned = False
        self._stopped = threading.Event()
        self.dropped_bytes = 0
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def partition(self) -> None:
        with self._lock:
            self._partitioned = True
            for connection in self._connections:
                connection.cut = True

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False
            cut = [c for c in self._connections if c.cut]
            self._connections = [c for c in self._connections if not c.cut]
        for connection in cut:
            connection.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(2 * _POLL + 1)
        self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> PartitionableProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._partitioned
            upstream = None
            if not cut:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
            connection = _Connection(client, upstream, cut)
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=self._pump, args=(connection, True), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(connection, False), daemon=True).start()

    def _pump(self, connection: _Connection, from_client: bool) -> None:
        source = connection.client if from_client else connection.upstream
        assert source is not None
        source.settimeout(_POLL)
        chunk = min(_CHUNK, self._rate // 10) if self._rate and not from_client else _CHUNK
        while not (connection.closed.is_set() or self._stopped.is_set()):
            try:
                data = source.recv(chunk)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if connection.cut:
                with self._lock:
                    self.dropped_bytes += len(data)
                continue
            destination = connection.upstream if from_client else connection.client
            try:
                assert destination is not None
                destination.sendall(data)
            except OSError:
                break
            if self._rate and not from_client:
                connection.closed.wait(len(data) / self._rate)
        if not connection.cut:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
