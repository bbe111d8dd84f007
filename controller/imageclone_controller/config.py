"""The controller's settings: one immutable object built from flags and environment, validated once.

Nothing here talks to the cluster or a registry. The engine is imported where it is used, so that a
missing engine is reported by the command line (``cli.parse``), not as a traceback at import. Parsing helpers raise
``ConfigError`` with a message meant for the person who typed the flag; the
CLI turns it into exit code 2.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_LEADER_ELECTION_ID: Final = "image-clone-controller"
# Measured on the 2-core lab, bursts of 1,000 Deployments (bench/controller.py's burst): create->rewritten p99
# 4.4-5.8 s with 4 workers (an older, slower machine). On today's, 2026-11-30, nine bursts in one lab
# interleaving 16, 32 and 64 workers: p99 0.73-1.13 s with 16, 0.54-1.29 s with 32, 1.01-1.62 s with 64, peak
# RSS 93, 105 and 111 MB. The machine is saturated (99% busy: creator, API server and controller share it), so
# past 16 workers only memory grows.
DEFAULT_WORKERS: Final = 16
DEFAULT_RESYNC: Final = 30 * 60.0
IN_CLUSTER_METRICS_ADDR: Final = ":8080"
LOCAL_METRICS_ADDR: Final = "127.0.0.1:8080"
ENV_USERNAME: Final = "IMAGECLONE_BACKUP_USERNAME"
ENV_PASSWORD: Final = "IMAGECLONE_BACKUP_PASSWORD"
NAMINGS: Final = ("flat", "nested")
LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
DEFAULT_API_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_API_READ_TIMEOUT: Final = 60.0

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """A flag or environment value is unusable; the message names it (never a secret value)."""


@dataclass(frozen=True, repr=False)
class ControllerConfig:
    """Everything the controller needs to run; ``repr`` never shows the password."""

    # The engine's backup options (``arguments.BACKUP_ARGUMENTS``), the password included.
    backup: Mapping[str, Any] = field(compare=False)
    kinds: tuple[str, ...] = ()  # engine kind names; cli fills in the default watched ones
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    ignore_namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    leader_election_id: str = DEFAULT_LEADER_ELECTION_ID
    leader_election_namespace: str = "default"
    workers: int = DEFAULT_WORKERS
    resync: float = DEFAULT_RESYNC
    metrics_addr: tuple[str, int] = ("127.0.0.1", 8080)
    log_format: str = "text"
    log_level: str = "info"
    api_connect_timeout: float = DEFAULT_API_CONNECT_TIMEOUT
    api_read_timeout: float = DEFAULT_API_READ_TIMEOUT
    pull_secret: str | None = None
    dry_run: bool = False
    password_on_argv: bool = False
    in_cluster: bool = False
    # Every password/token found in the auth files, so logs can mask them too.
    auth_secrets: tuple[str, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        return (f"ControllerConfig(backup_registry={self.backup_registry!r}, kinds={self.kinds!r}, "
                f"naming={self.naming!r}, workers={self.workers})")

    @property
    def backup_registry(self) -> str:
        return str(self.backup["backup_registry"])

    @property
    def naming(self) -> str:
        return str(self.backup["naming"])

    @property
    def backup_username(self) -> str | None:
        return self.backup.get("backup_username")

    @property
    def backup_password(self) -> str | None:
        return self.backup.get("backup_password")

    @property
    def backup_authfile(self) -> str | None:
        return self.backup.get("backup_authfile")

    @property
    def insecure_registries(self) -> tuple[str, ...]:
        return tuple(self.backup.get("insecure_registries") or ())

    def backup_options(self) -> dict[str, Any]:
        """The engine's ``BackupOptions`` mapping (the password included: hand it to the engine only)."""
        return dict(self.backup)

    def connection(self) -> dict[str, Any]:
        """Kubernetes connection options: the kubeconfig if given, else in-cluster (or the default kubeconfig)."""
        timeouts = {"api_connect_timeout": self.api_connect_timeout, "api_read_timeout": self.api_read_timeout}
        return ({"kubeconfig": self.kubeconfig} if self.kubeconfig else {}) | timeouts

    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed (log redaction uses them)."""
        return tuple(dict.fromkeys(secret for secret in (self.backup_password, *self.auth_secrets) if secret))

    def safe_summary(self) -> dict[str, Any]:
        """What the startup log line shows: every setting but the credentials."""
        from imageclone_controller.options import BACKUP_FLAGS

        shown = {BACKUP_FLAGS[option].lstrip("-"): self.backup[option] for option in BACKUP_FLAGS
                 if option not in ("backup_username", "backup_password", "backup_authfile")}
        return {
            **shown,
            "kinds": list(self.kinds),
            "namespaces": list(self.namespaces) or "all",
            "ignoreNamespaces": ["kube-system", *self.ignore_namespaces],
            "workers": self.workers,
            "resyncSeconds": self.resync,
            "leaderElectionID": self.leader_election_id,
            "leaderElectionNamespace": self.leader_election_namespace,
            "metricsAddr": format_address(self.metrics_addr),
            "apiTimeoutSeconds": {"connect": self.api_connect_timeout, "read": self.api_read_timeout},
            "logLevel": self.log_level,
            "credentials": self.credential_source(),
            "pullSecret": self.pull_secret,
            "dryRun": self.dry_run,
        }

    def credential_source(self) -> str:
        """Where the backup login comes from, for logs: never the values themselves."""
        sources = []
        if self.backup_authfile:
            sources.append("auth file")
        if self.backup_password:
            sources.append("argv" if self.password_on_argv else "environment")
        return " + ".join(sources) or "anonymous"


def in_cluster(environ: Mapping[str, str] | None = None, account_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    """Whether we run in a pod with a service account (the way client-go decides)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and (account_dir / "token").is_file()


def pod_namespace(account_dir: Path = SERVICE_ACCOUNT_DIR) -> str:
    """The namespace of the pod's service account, else ``default``."""
    try:
        namespace = (account_dir / "namespace").read_text().strip()
    except OSError:
        return "default"
    return namespace or "default"


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``1.5`` (seconds) or a Go duration such as ``30s``, ``10m``, ``1h30m``."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != position:
                break
            seconds += float(match[1]) * _UNITS[match[2]]
            position = match.end()
        if position != len(value) or not value:
            raise ConfigError(f"invalid duration {text!r} (examples: 30s, 10m, 1h30m, 90)") from None
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ConfigError(f"invalid duration {text!r}: must be a non-negative number of seconds")
    return seconds


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``:port`` (every interface) or ``[v6]:port``."""
    value = text.strip()
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"invalid address {text!r}: expected host:port or :port (e.g. :8080, 127.0.0.1:0)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"invalid address {text!r}: write IPv6 hosts in brackets, [::1]:8080")
    return host, int(port)


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_list(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated flag values, trimmed, empty ones dropped, order kept, no repeats."""
    items = (item.strip() for value in values or () for item in value.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def parse_kinds(values: Iterable[str] | None, known: Iterable[str], default: Iterable[str]) -> tuple[str, ...]:
    """Workload kind names, checked against the engine's; none given means ``default``."""
    kinds = split_list(values) or tuple(default)
    known = tuple(known)
    by_lower = {name.lower(): name for name in known}
    resolved = []
    for kind in kinds:
        name = by_lower.get(kind.lower())
        if name is None:
            raise ConfigError(f"unknown kind {kind!r} in --kinds; known kinds: {', '.join(known)}")
        resolved.append(name)
    return tuple(dict.fromkeys(resolved))


def check_namespace(name: str, flag: str) -> str:
    from imageclone_controller.engine import arguments

    if not arguments.is_namespace_name(name):
        raise ConfigError(f"{flag} {name!r} is not a valid namespace name")
    return name


def check_object_name(name: str, flag: str) -> str:
    from imageclone_controller.engine import arguments

    if not arguments.is_object_name(name):
        raise ConfigError(f"{flag} {name!r} is not a valid Kubernetes object name (lowercase DNS subdomain)")
    return name


def _path_check(path: str, flag: str, check: str) -> bool:
    """``Path(path).is_file()`` / ``is_dir()``, an unusable path (too long, no permission) a ConfigError."""
    try:
        return getattr(Path(path), check)()
    except OSError as error:
        raise ConfigError(f"{flag} {path!r}: {error.strerror or error}") from None


def check_readable_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    if not _path_check(path, flag, "is_file"):
        raise ConfigError(f"{flag} {path!r}: no such file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{flag} {path!r}: not readable")
    return path


def check_directory(path: str | None, flag: str) -> str | None:
    if path is not None and not _path_check(path, flag, "is_dir"):
        raise ConfigError(f"{flag} {path!r}: no such directory")
    return path
