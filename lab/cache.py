"""What the project builds once and keeps outside the clone, under ``~/.cache/image-clone`` (``$IMAGECLONE_CACHE``).

Each entry is a directory ``<root>/<kind>/<key>``; the key names its inputs (a pin and a hash of what it is
built from), so a changed input builds a new entry and an unchanged one is found at once. An entry is built
in a staging directory beside it and renamed into place when complete: an interrupted build leaves nothing
that passes for a finished one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("IMAGECLONE_CACHE", Path.home() / ".cache" / "image-clone"))


def digest_of(*parts: bytes | str | Path, length: int = 12) -> str:
    """A short hash of ``parts``: bytes and strings as they are, paths by their content."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part
        digest.update(data.encode() if isinstance(data, str) else data)
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def cached(kind: str, key: str, build: Callable[[Path], None], *, expect: Iterable[str] = (),
           what: str = "", log=sys.stderr) -> Path:
    """The entry ``<root>/<kind>/<key>``, calling ``build(staging)`` first when it is missing or lacks any of
    ``expect`` (file names inside it). ``what`` is announced before a build, with its duration after."""
    target = cache_root() / kind / key
    wanted = list(expect)
    if target.is_dir() and all((target / name).exists() for name in wanted):
        return target
    if what:
        print(f"building {what} ...", file=log, flush=True)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        build(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if what:
        print(f"built {what} in {time.monotonic() - started:.0f}s into {target}", file=log, flush=True)
    return target
