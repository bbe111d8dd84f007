"""Structured logs on stderr: one JSON object per line (in cluster) or readable text, secrets redacted.

Use ``log.info("message", extra=fields(key=value, ...))`` to attach fields;
they become top-level JSON keys (or ``key=value`` pairs in text). Every
formatted line, exception tracebacks included, goes through ``Redactor``,
which masks the configured secrets and their usual encodings, so a password
that slips into a message or an error cannot reach the log.
"""
from __future__ import annotations

import base64
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote

from imageclone_controller.engine import credentials

MASK: Final = "***"
_FIELDS: Final = "imageclone_fields"
_RESERVED: Final = ("ts", "level", "logger", "msg", "error")


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra=`` for a log call: structured key/value pairs."""
    return {_FIELDS: values}


class Redactor:
    """Replaces secrets, and their base64 / URL-encoded / JSON-escaped forms, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            forms |= {secret, quote(secret, safe=""), json.dumps(secret)[1:-1],
                      base64.b64encode(secret.encode()).decode().rstrip("=")}
        # Longest first, so a secret containing another is masked whole.
        self._forms = sorted((form for form in forms if len(form) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def add_basic_auth(self, username: str | None, password: str | None) -> None:
        """Also mask ``base64(username:password)``, what an Authorization header or auth file holds."""
        if username and password:
            token = credentials.basic_token(username, password)
            self._forms = sorted({*self._forms, token, token.rstrip("=")}, key=len, reverse=True)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        # Values are redacted before serializing: masking the serialized line would miss a secret that
        # JSON escapes a second time and could cut an escape sequence in half.
        redact = self._redact
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in getattr(record, _FIELDS, {}).items():
            entry[f"field_{key}" if key in _RESERVED else key] = _redacted(value, redact)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: redact(str(value)), separators=(",", ":"))


def _redacted(value: Any, redact: Redactor) -> Any:
    """``value`` with every string in it (keys of mappings included) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(key)): _redacted(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redacted(item, redact) for item in value]
    return value


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = getattr(record, _FIELDS, {})
        if extra:
            pairs = " ".join(f"{key}={json.dumps(value, default=str)}" for key, value in extra.items())
            line = line.replace("\n", f" {pairs}\n", 1) if "\n" in line else f"{line} {pairs}"
        return self._redact(line)


def setup_logging(fmt: str = "text", *, secrets: Iterable[str] = (), level: int = logging.INFO,
                  stream: Any = None, username: str | None = None) -> Redactor:
    """Route every logger to one stderr handler in ``fmt`` ("json" or "text"); returns the redactor."""
    redact = Redactor(secrets)
    for secret in secrets:
        redact.add_basic_auth(username, secret)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler.addFilter(_quiet_libraries)
    root.addHandler(handler)
    root.setLevel(level)
    return redact


# Minimum levels for third-party loggers. A handler filter, not logger levels: the Kubernetes
# client resets the urllib3 logger's level whenever a Configuration is created.
_LIBRARY_LEVELS: Final = {"kubernetes": logging.WARNING, "urllib3": logging.ERROR}


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Drop the client libraries' chatter (urllib3 retry notices, request debug with headers)."""
    root = record.name.split(".", 1)[0]
    minimum = _LIBRARY_LEVELS.get(root)
    return minimum is None or record.levelno >= minimum
