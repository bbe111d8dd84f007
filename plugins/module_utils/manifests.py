"""What a copier must know of a manifest: which blobs and which child manifests it references.

Pure functions over the bytes a registry served: the bytes themselves are
pushed unchanged (their digest is the image's identity), so nothing here ever
re-serializes a document.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final

from ansible_collections.imageclone.backup.plugins.module_utils.reference import digest_problem

INDEX_TYPES: Final = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
IMAGE_TYPES: Final = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
})
# Docker's signed schema 1: its digest covers a signature a copy cannot reproduce; registries dropped it.
SCHEMA1_TYPES: Final = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})


class ManifestProblem(ValueError):
    """The bytes are no manifest a copier understands."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A reference to content by digest, with its size in bytes."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest as served: its digest, media type and exact bytes, and what it references."""

    digest: str
    media_type: str
    content: bytes
    children: tuple[Descriptor, ...]
    blobs: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def content_digest(content: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


def parse_manifest(content: bytes, content_type: str) -> Manifest:
    """The manifest in ``content`` as served with ``content_type`` (its ``mediaType`` field when the
    header is missing or generic); raises ``ManifestProblem`` for schema 1 and anything unknown."""
    try:
        document = json.loads(content)
    except ValueError:
        raise ManifestProblem("the manifest is not JSON") from None
    if not isinstance(document, dict):
        raise ManifestProblem("the manifest is not a JSON object")
    media_type = content_type.partition(";")[0].strip()
    if media_type not in INDEX_TYPES | IMAGE_TYPES | SCHEMA1_TYPES:
        media_type = str(document.get("mediaType") or "")
    if media_type in SCHEMA1_TYPES or document.get("schemaVersion") == 1:
        raise ManifestProblem("Docker schema 1 manifests are not copied (their signed digest cannot be preserved)")
    if media_type in INDEX_TYPES:
        return Manifest(content_digest(content), media_type, content,
                        _descriptors(document.get("manifests"), "manifests"), ())
    if media_type in IMAGE_TYPES:
        config = _descriptors([document.get("config")], "config")
        return Manifest(content_digest(content), media_type, content, (),
                        config + _descriptors(document.get("layers"), "layers"))
    raise ManifestProblem(f"unknown manifest media type {media_type or '(none)'!r}")


def _descriptors(entries: object, field: str) -> tuple[Descriptor, ...]:
    if not isinstance(entries, list):
        raise ManifestProblem(f"the manifest's {field} is not a list")
    found = []
    for entry in entries:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestProblem(f"the manifest's {field} has an entry without digest and size")
        # The digest goes into URL paths: only a well-formed one is followed.
        problem = digest_problem(digest)
        if problem is not None:
            raise ManifestProblem(f"the manifest's {field} has an invalid digest: {problem}")
        found.append(Descriptor(digest, size))
    return tuple(found)
