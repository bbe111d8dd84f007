"""Run ``skopeo copy`` safely: argv lists, credentials in a private auth file, a hard timeout.

Credentials never reach argv (where any local user can read them from /proc):
skopeo reads them from an auth file that exists, mode 0600 in a 0700 directory,
only for the duration of one copy.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.imageclone.backup.plugins.module_utils.copier import CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    CredentialStore,
    memfd_number,
    private_authfile,
)
from ansible_collections.imageclone.backup.plugins.module_utils.proxies import ProxyEnvironment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference

# Lines of skopeo's stderr that say the source image does not exist (as opposed to a
# transient or auth failure): registries answer 404 with MANIFEST_UNKNOWN / NAME_UNKNOWN.
_NOT_FOUND = re.compile(r"manifest unknown|name unknown|not found|MANIFEST_UNKNOWN|NAME_UNKNOWN", re.I)
# A registry's own failure (docker-registry answers 500 to concurrent pushes of one blob, for
# instance): the same copy usually succeeds moments later.
_SERVER_ERROR = re.compile(r"\b5\d\d \((?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\)")
# Environment skopeo needs besides the proxy variables; everything else (tokens in CI variables...) stays out.
_PASSED_ENV = ("PATH", "HOME", "TMPDIR", "XDG_RUNTIME_DIR")


class RunningCopies:
    """The copies running now, so that a caller shutting down can end them at once.

    Each skopeo runs in its own session (a signal to its parent's group does not
    reach it), so ``cancel`` kills each process group; until ``resume``, a copy
    about to start fails at once instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[str]] = set()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @contextmanager
    def track(self, process: subprocess.Popen[str]) -> Iterator[None]:
        with self._lock:
            self._processes.add(process)
            cancelled = self._cancelled
        if cancelled:
            _kill_group(process)
        try:
            yield
        finally:
            with self._lock:
                self._processes.discard(process)

    def cancel(self) -> int:
        """Kill every running copy and refuse new ones; returns how many were killed."""
        with self._lock:
            self._cancelled = True
            running = list(self._processes)
        for process in running:
            _kill_group(process)
        return len(running)

    def resume(self) -> None:
        with self._lock:
            self._cancelled = False


@dataclass(frozen=True)
class Skopeo:
    """The ``Copier`` that runs skopeo: binary, TLS material, retries, the per-copy timeout and the proxy
    variables it gets, as the engine's own clients read them (skopeo applies the same rule)."""

    binary: str = "skopeo"
    certs_dir: Path | None = None
    insecure_registries: frozenset[str] = field(default_factory=frozenset)
    retry_times: int = 3
    timeout: float = 600.0
    running: RunningCopies = field(default_factory=RunningCopies, compare=False)
    proxies: ProxyEnvironment = field(default_factory=lambda: ProxyEnvironment.from_environ(os.environ))

    def cancel(self) -> int:
        return self.running.cancel()

    def resume(self) -> None:
        self.running.resume()

    def copy(self, source: ImageReference, destination: ImageReference, credentials: CredentialStore) -> None:
        """Copy every platform of ``source`` to ``destination`` with digests unchanged.

        Raises ``CopyError`` (``missing=True`` when the source does not exist).
        """
        if shutil.which(self.binary) is None:
            raise CopyError(f"skopeo is not installed (looked for {self.binary!r} on PATH)")
        with private_authfile(credentials, (source.registry, destination.registry)) as authfile:
            argv = self.copy_argv(source, destination, authfile)
            fd = memfd_number(authfile)
            self._run(argv, f"copy {source} -> {destination}", () if fd is None else (fd,))

    def copy_argv(self, source: ImageReference, destination: ImageReference, authfile: Path) -> list[str]:
        """The exact argv of one copy (exposed so tests can assert what is, and is not, on it)."""
        argv = [self.binary, "copy", "--all", "--preserve-digests", f"--retry-times={self.retry_times}",
                f"--src-authfile={authfile}", f"--dest-authfile={authfile}"]
        argv += self._tls_flags("src", source.registry) + self._tls_flags("dest", destination.registry)
        # skopeo refuses tag+digest references: copy the exact source digest, write the tag.
        source_ref = source.without_tag() if source.digest else source
        return argv + [f"docker://{source_ref}", f"docker://{destination.without_digest()}"]

    def _tls_flags(self, side: str, registry: str) -> list[str]:
        if registry in self.insecure_registries:
            return [f"--{side}-tls-verify=false"]
        return [f"--{side}-cert-dir={self.certs_dir}"] if self.certs_dir else []

    def _run(self, argv: list[str], what: str, pass_fds: tuple[int, ...] = ()) -> None:
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        env.update(self.proxies.as_environ())
        if self.running.cancelled:
            raise CopyError(f"{what}: cancelled, shutting down")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                                   pass_fds=pass_fds)
        with self.running.track(process):
            try:
                stderr = process.communicate(timeout=self.timeout)[1]
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.communicate()
                raise CopyError(f"{what}: timed out after {self.timeout:.0f}s") from None
        if process.returncode != 0 and self.running.cancelled:
            raise CopyError(f"{what}: cancelled, shutting down")
        if process.returncode != 0:
            detail = _last_message(stderr)
            if process.returncode < 0:
                killed = f"skopeo was killed by {_signal_name(-process.returncode)}"
                detail = f"{killed}: {detail}" if stderr.strip() else killed
            raise CopyError(f"{what}: {detail}", missing=bool(_NOT_FOUND.search(detail)),
                            transient=process.returncode > 0 and bool(_SERVER_ERROR.search(detail)))


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_message(stderr: str) -> str:
    """skopeo's final error, without logrus decoration."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "skopeo failed without a message"
    match = re.search(r'msg="(.*)"', lines[-1])
    return (match.group(1) if match else lines[-1]).replace('\\"', '"')
