"""Detached lab daemons: started in their own session, tracked by pid files, logged to files."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from pathlib import Path

from lab.waiting import wait_for


class Daemons:
    """Start, stop and inspect the lab's long-running processes under ``state/run``."""

    def __init__(self, state: Path) -> None:
        self.run_dir = state / "run"
        self.log_dir = state / "logs"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 25) -> str:
        """The last ``lines`` of ``name``'s log, headed by its path: what a failed wait shows."""
        log = self.log_file(name)
        if not log.exists():
            return f"(no log at {log})"
        return f"--- last lines of {log} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def pid(self, name: str) -> int | None:
        """The pid of ``name`` if it is alive, else None."""
        try:
            pid = int(self._pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` detached (its own process group, output appended to its log)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self._pid_file(name).write_text(str(process.pid))
        return process.pid

    def stop(self, name: str, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal ``name``'s process group and wait for it; SIGKILL if it lingers."""
        pid = self.pid(name)
        if pid is not None:
            _signal_group(pid, sig)
            if not wait_gone(pid, timeout):
                _signal_group(pid, signal.SIGKILL)
                wait_gone(pid, 5.0)
            _reap(pid)
        self._pid_file(name).unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether ``pid`` ended (a zombie counts as ended) within ``timeout`` seconds."""
    try:
        return wait_for(lambda: not alive(pid), f"pid {pid} to end", timeout, interval=0.05)
    except TimeoutError:
        return False


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our child (a test that started the lab), so no zombie stays."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie whose threads have all ended.

    A killed multi-threaded process (every Go daemon) turns its leader into a zombie before its other
    threads have closed its files: until they are gone, its listening sockets still hold their ports.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def resident_memory(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of ``pid`` in bytes; nothing once it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def kill(pid: int) -> None:
    """SIGKILL one process the lab (or a test) started, or that one of them started, by pid."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Above the well-known and registered ports that services on a developer's machine commonly use.
PORTS_FLOOR = 20000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range.

    Daemons the tests kill and restart on the same port must find it free again: a port from the
    ephemeral range can meanwhile become the local end of any outgoing connection, even a client's
    retry connecting to that very port (TCP self-connect), and the restart fails to bind.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(PORTS_FLOOR, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {PORTS_FLOOR} and {low} on 127.0.0.1")


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, PORTS_FLOOR + 1000)
