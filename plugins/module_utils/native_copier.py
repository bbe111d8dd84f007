"""The ``Copier`` built on the engine's own registry client: no process per image, every blob once per run.

One copy fetches the source manifest (by digest when the reference has one,
and checked against it), every child of an index or manifest list (all
platforms), then every blob they reference, several at a time (see
``blobs``: blobs shared between images are fetched from the source once).
Manifests are then pushed byte for byte as fetched, with the media type the
source served, so every digest is preserved: children by digest first, the
top manifest last and under the destination's tag, so that a tag never names
content that is not all there. Whatever the destination already holds (a
child manifest, a blob, the top manifest by digest) is not fetched from the
source again.

Authentication, TLS, proxies, throttling and retries are the registry
client's; errors become ``CopyError`` with the same meaning as skopeo's.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

from ansible_collections.imageclone.backup.plugins.module_utils.blobs import (
    BlobCopier,
    BlobProblem,
    TransferCancelled,
)
from ansible_collections.imageclone.backup.plugins.module_utils.copier import CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.manifests import (
    Descriptor,
    Manifest,
    ManifestProblem,
    parse_manifest,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    MANIFEST_MEDIA_TYPES,
    RateLimited,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)


class NativeCopier:
    """The ``Copier`` speaking the distribution API through ``registry``; ``workers`` blob transfers at
    a time in all, at most ``per_registry`` from one source registry, each tried ``attempts`` times."""

    def __init__(self, registry: RegistryClient, *, workers: int = 16, per_registry: int = 6,
                 attempts: int = 3) -> None:
        self._registry = registry
        self._blobs = BlobCopier(per_registry=per_registry, attempts=attempts)
        self._workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running = 0

    def cancel(self) -> int:
        with self._lock:
            running = self._running
        self._blobs.transfers.cancel()
        return running

    def resume(self) -> None:
        self._blobs.transfers.resume()

    def copy(self, source: ImageReference, destination: ImageReference, credentials: CredentialStore) -> None:
        """Copy every platform of ``source`` to ``destination`` with digests unchanged; raises ``CopyError``
        (``missing=True`` when the source does not exist, ``transient=True`` when another try may pass)."""
        what = f"copy {source} -> {destination.without_digest()}"
        client = self._registry.with_credentials(credentials)
        try:
            with self._counted(what) as pool:
                self._copy(client, pool, source, destination.without_digest())
        except TransferCancelled:
            raise CopyError(f"{what}: cancelled, shutting down") from None
        except ManifestProblem as error:
            raise CopyError(f"{what}: {error}") from None
        except RegistryError as error:
            if self._blobs.transfers.cancelled:
                raise CopyError(f"{what}: cancelled, shutting down") from None
            transient = isinstance(error, RegistryUnavailable) and not isinstance(error, RateLimited)
            raise CopyError(f"{what}: {error}", transient=transient) from None

    @contextmanager
    def _counted(self, what: str) -> Iterator[ThreadPoolExecutor]:
        """The blob pool of the copies running now, shared by them and let go by the last one: a service
        that outlives its copies (the controller, a test run, a caller of the engine) keeps no idle thread."""
        with self._lock:
            if self._blobs.transfers.cancelled:
                raise CopyError(f"{what}: cancelled, shutting down")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="blob")
            pool = self._pool
            self._running += 1
        try:
            yield pool
        finally:
            with self._lock:
                self._running -= 1
                idle = self._pool if self._running == 0 else None
                if idle is not None:
                    self._pool = None
            if idle is not None:
                idle.shutdown(wait=False)

    def _copy(self, client: RegistryClient, pool: ThreadPoolExecutor, source: ImageReference,
              destination: ImageReference) -> None:
        source = source.without_tag() if source.digest else source
        top = self._top_manifest(client, source, destination)
        if top is None:
            raise CopyError(f"copy {source} -> {destination}: manifest unknown in {source.registry}", missing=True)
        pending: list[Manifest] = []
        self._gather(client, source, destination, top, pending)
        self._copy_blobs(client, pool, source, destination,
                         {blob for manifest in pending for blob in manifest.blobs})
        for manifest in pending[:-1]:
            self._put_manifest(client, destination.with_tag(None).with_digest(manifest.digest), manifest)
        self._put_manifest(client, destination if destination.tag else destination.with_digest(top.digest), top)

    def _top_manifest(self, client: RegistryClient, source: ImageReference,
                      destination: ImageReference) -> Manifest | None:
        """The source's manifest; read from the destination instead when it already holds that digest
        (a new tag for known content costs the source nothing)."""
        if source.digest is not None:
            stored = destination.with_tag(None).with_digest(source.digest)
            if client.head_manifest(stored) is not None:
                return self._get_manifest(client, stored)
        return self._get_manifest(client, source)

    def _gather(self, client: RegistryClient, source: ImageReference, destination: ImageReference,
                manifest: Manifest, pending: list[Manifest]) -> None:
        """``manifest`` and the children the destination lacks, children first (the order of pushing)."""
        for child in manifest.children:
            if client.head_manifest(destination.with_tag(None).with_digest(child.digest)) is not None:
                continue
            fetched = self._get_manifest(client, source.with_tag(None).with_digest(child.digest))
            if fetched is None:
                raise RegistryError(source, f"the index names {child.digest}, which the registry does not have")
            self._gather(client, source, destination, fetched, pending)
        pending.append(manifest)

    def _get_manifest(self, client: RegistryClient, ref: ImageReference) -> Manifest | None:
        target = ref.digest or ref.tag
        response = client.request(ref, "GET", f"/v2/{ref.path}/manifests/{target}",
                                  {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)})
        if response.status == 404:
            return None
        if response.status != 200:
            raise RegistryError(ref, f"unexpected HTTP {response.status} to a manifest GET")
        manifest = parse_manifest(response.data, response.headers.get("Content-Type", ""))
        if ref.digest is not None and manifest.digest != ref.digest:
            raise RegistryError(ref, f"the manifest served has digest {manifest.digest}")
        return manifest

    def _copy_blobs(self, client: RegistryClient, pool: ThreadPoolExecutor, source: ImageReference,
                    destination: ImageReference, blobs: set[Descriptor]) -> None:
        futures = [pool.submit(self._blobs.ensure, client, source, client, destination, blob)
                   for blob in sorted(blobs, key=lambda blob: -blob.size)]
        wait(futures)
        for future in futures:
            error = future.exception()
            if isinstance(error, BlobProblem):
                raise CopyError(f"copy {source} -> {destination}: {error}")
            if error is not None:
                raise error

    def _put_manifest(self, client: RegistryClient, ref: ImageReference, manifest: Manifest) -> None:
        response = client.request(ref, "PUT", f"/v2/{ref.path}/manifests/{ref.tag or ref.digest}",
                                  {"Content-Type": manifest.media_type}, push=True, body=manifest.content)
        if response.status != 201:
            raise RegistryError(ref, f"HTTP {response.status} to a manifest PUT: {_error_code(response.data)}")
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != manifest.digest:
            raise RegistryError(ref, f"the registry stored the manifest as {stored}, not {manifest.digest}")


def _error_code(body: bytes) -> str:
    """The registry's error codes (``MANIFEST_BLOB_UNKNOWN``...), never the rest of its answer."""
    try:
        errors = json.loads(body).get("errors", [])
        return ", ".join(str(error.get("code")) for error in errors if isinstance(error, dict)) or "no error code"
    except (ValueError, AttributeError):
        return "no error code"
