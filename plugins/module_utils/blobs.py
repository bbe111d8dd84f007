"""Blobs from one registry into another, each fetched at most once per run, streamed and verified.

A blob is first looked for in the destination repository (HEAD), then
mounted from another repository of the destination registry that already
holds it, and only then streamed from the source: the source's GET feeds the
destination's monolithic upload (POST, then PUT ``?digest=``) chunk by chunk
while its digest is computed. The last chunk is held back until the digest
and size match, so a corrupted or cut transfer never completes an upload
(the registry, which checks the digest too, then has nothing to commit).

Concurrent requests for the same blob share one transfer: per destination
repository, and per destination registry, so an image's layers shared by
many images of a run cross the link once and are mounted everywhere else.
Transfers are bounded per source registry, not per image.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Final
from urllib.parse import urlencode, urljoin

try:
    import urllib3
except ImportError:  # the registry client reports it (URLLIB3_IMPORT_ERROR)
    pass

from ansible_collections.imageclone.backup.plugins.module_utils.concurrency import KeyedLimiter, SingleFlight
from ansible_collections.imageclone.backup.plugins.module_utils.manifests import Descriptor
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)

CHUNK_SIZE: Final = 1 << 20
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 3


class TransferCancelled(Exception):
    """The copier was cancelled while this transfer ran."""


class BlobProblem(RegistryError):
    """A blob could not be copied: absent from the source, or its bytes do not match its digest."""


class _CutShort(Exception):
    """The source stream broke or lied; raised from inside an upload body, so urllib3 never mistakes
    it for a failure of the destination connection (which it would retry with a spent body)."""


class OpenTransfers:
    """Source downloads in progress, so that ``cancel`` can cut them at once from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[urllib3.BaseHTTPResponse] = set()
        self.cancelled = False

    def add(self, response: urllib3.BaseHTTPResponse) -> None:
        with self._lock:
            self._responses.add(response)
            cancelled = self.cancelled
        if cancelled:
            _cut(response)

    def discard(self, response: urllib3.BaseHTTPResponse) -> None:
        with self._lock:
            self._responses.discard(response)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            responses = list(self._responses)
        for response in responses:
            _cut(response)

    def resume(self) -> None:
        with self._lock:
            self.cancelled = False


def _cut(response: urllib3.BaseHTTPResponse) -> None:
    """Shut the socket of a download down, unless it has just ended: urllib3 then has released its
    connection to the pool already (RuntimeError), or closed it (ValueError, OSError)."""
    try:
        response.shutdown()
    except (RuntimeError, ValueError, OSError):
        pass


class BlobCopier:
    """Copies blobs between registries through one ``RegistryClient`` (its connections, tokens and backoff);
    ``per_registry`` transfers at most from one source registry, ``attempts`` tries per transfer."""

    def __init__(self, per_registry: int = 6, attempts: int = 3, retry_delay: float = 0.5) -> None:
        self._limiter = KeyedLimiter(per_registry)
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._in_repository: SingleFlight[None] = SingleFlight()
        self._in_registry: SingleFlight[str] = SingleFlight()
        self._lock = threading.Lock()
        # Where each blob is known to be in a destination registry: (registry, digest) -> repository path.
        self._seen: dict[tuple[str, str], str] = {}
        self.transfers = OpenTransfers()

    def ensure(self, source: RegistryClient, source_ref: ImageReference, destination: RegistryClient,
               destination_ref: ImageReference, blob: Descriptor) -> None:
        """Make ``blob`` of ``source_ref``'s repository exist in ``destination_ref``'s repository."""
        key = (destination_ref.registry, destination_ref.path, blob.digest)
        self._in_repository.do(key, lambda: self._ensure(source, source_ref, destination, destination_ref, blob))

    def _ensure(self, source: RegistryClient, source_ref: ImageReference, destination: RegistryClient,
                destination_ref: ImageReference, blob: Descriptor) -> None:
        if self._exists(destination, destination_ref, blob):
            self._remember(destination_ref, blob)
            return
        landed = self._in_registry.do(
            (destination_ref.registry, blob.digest),
            lambda: self._known(destination_ref, blob) or self._transfer(source, source_ref, destination,
                                                                         destination_ref, blob))
        if landed != destination_ref.path and not self._mount(destination, destination_ref, landed, blob):
            self._transfer(source, source_ref, destination, destination_ref, blob)

    def _remember(self, ref: ImageReference, blob: Descriptor) -> None:
        with self._lock:
            self._seen.setdefault((ref.registry, blob.digest), ref.path)

    def _known(self, ref: ImageReference, blob: Descriptor) -> str | None:
        """A repository of ``ref``'s registry known to hold ``blob``: it is mounted from there."""
        with self._lock:
            return self._seen.get((ref.registry, blob.digest))

    def _exists(self, client: RegistryClient, ref: ImageReference, blob: Descriptor) -> bool:
        response = client.request(ref, "HEAD", f"/v2/{ref.path}/blobs/{blob.digest}", push=True)
        if response.status in (200, 404):
            return response.status == 200
        raise RegistryError(ref, f"unexpected HTTP {response.status} to a blob HEAD")

    def _mount(self, client: RegistryClient, ref: ImageReference, origin: str, blob: Descriptor) -> bool:
        """Mount ``blob`` from repository ``origin`` of the same registry; ``False`` where the registry
        would rather take an upload (it then opened one, which is abandoned)."""
        query = urlencode({"mount": blob.digest, "from": origin})
        response = client.request(ref, "POST", f"/v2/{ref.path}/blobs/uploads/?{query}", {"Content-Length": "0"},
                                  push=True, mount_from=origin)
        if response.status == 201:
            self._remember(ref, blob)
            return True
        if response.status == 202:
            self._abandon(client, ref, response.headers.get("Location"))
        return False

    def _transfer(self, source: RegistryClient, source_ref: ImageReference, destination: RegistryClient,
                  destination_ref: ImageReference, blob: Descriptor) -> str:
        """Stream ``blob`` from the source into the destination repository, retrying a cut transfer;
        returns the repository that now holds it."""
        with self._limiter.hold(source_ref.registry):
            for attempt in range(1, self._attempts + 1):
                try:
                    self._stream(source, source_ref, destination, destination_ref, blob)
                    break
                except RegistryUnavailable:
                    if attempt == self._attempts or self.transfers.cancelled:
                        raise
                time.sleep(self._retry_delay * attempt)
        self._remember(destination_ref, blob)
        return destination_ref.path

    def _stream(self, source: RegistryClient, source_ref: ImageReference, destination: RegistryClient,
                destination_ref: ImageReference, blob: Descriptor) -> None:
        download = self._download(source, source_ref, blob)
        self.transfers.add(download)
        upload: str | None = None
        try:
            upload = self._start_upload(destination, destination_ref)
            separator = "&" if "?" in upload else "?"
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
            try:
                response = destination.request(destination_ref, "PUT", f"{upload}{separator}"
                                               f"{urlencode({'digest': blob.digest})}", headers, push=True,
                                               body=self._verified(download, blob))
            except _CutShort as error:
                if self.transfers.cancelled:
                    raise TransferCancelled() from None
                raise RegistryUnavailable(source_ref, f"blob {blob.digest}: {error}") from None
            if response.status != 201:
                raise RegistryError(destination_ref, f"HTTP {response.status} to the upload of blob {blob.digest}")
            upload = None
        finally:
            self.transfers.discard(download)
            download.close()
            if upload is not None:
                self._abandon(destination, destination_ref, upload)

    def _download(self, client: RegistryClient, ref: ImageReference, blob: Descriptor) -> urllib3.BaseHTTPResponse:
        if self.transfers.cancelled:
            raise TransferCancelled()
        response = client.request(ref, "GET", f"/v2/{ref.path}/blobs/{blob.digest}", stream=True)
        for _hop in range(_MAX_REDIRECTS):
            if response.status not in _REDIRECTS or not response.headers.get("Location"):
                break
            location = urljoin(response.geturl() or "", response.headers["Location"])
            response.drain_conn()
            response = client.fetch(ref, location)
        if response.status == 200:
            return response
        response.drain_conn()
        if response.status == 404:
            raise BlobProblem(ref, f"blob {blob.digest} is missing from the source repository")
        raise RegistryError(ref, f"unexpected HTTP {response.status} to a blob GET")

    def _start_upload(self, client: RegistryClient, ref: ImageReference) -> str:
        response = client.request(ref, "POST", f"/v2/{ref.path}/blobs/uploads/", {"Content-Length": "0"}, push=True)
        location = response.headers.get("Location")
        if response.status != 202 or not location:
            raise RegistryError(ref, f"HTTP {response.status} to the start of an upload")
        return location

    def _abandon(self, client: RegistryClient, ref: ImageReference, location: str | None) -> None:
        """Cancel an upload session, so the registry can drop what it received; a failure is harmless
        (registries expire sessions on their own)."""
        if not location:
            return
        try:
            client.request(ref, "DELETE", location, push=True)
        except RegistryError:
            pass

    def _verified(self, download: urllib3.BaseHTTPResponse, blob: Descriptor) -> Iterator[bytes]:
        """The download's chunks; the last one only once size and digest match ``blob``."""
        algorithm = blob.digest.partition(":")[0]
        hasher = hashlib.new(algorithm)
        received = 0
        pending = b""
        try:
            for chunk in download.stream(CHUNK_SIZE, decode_content=False):
                if self.transfers.cancelled:
                    raise _CutShort("cancelled")
                received += len(chunk)
                if received > blob.size:
                    raise _CutShort(f"the source sent more than the {blob.size} bytes its manifest says")
                hasher.update(chunk)
                if pending:
                    yield pending
                pending = chunk
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _CutShort(f"the download broke after {received} of {blob.size} bytes: "
                            f"{type(error).__name__}") from None
        if received != blob.size:
            raise _CutShort(f"the download ended after {received} of {blob.size} bytes")
        if f"{algorithm}:{hasher.hexdigest()}" != blob.digest:
            raise _CutShort("the downloaded bytes do not match the blob's digest")
        yield pending
