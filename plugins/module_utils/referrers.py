"""What refers to an image by digest (signatures, attestations, SBOMs), found upstream and copied along.

Two tag schemas put such artifacts beside the image, in the same repository,
under tags derived from the image's digest ``<algorithm>:<hex>``:

* cosign's: ``<algorithm>-<hex>.sig`` (signatures), ``.att`` (attestations)
  and ``.sbom`` (SBOMs), each a manifest whose layers are the artifacts;
* the OCI distribution spec 1.1's referrers tag schema: ``<algorithm>-<hex>``,
  an image index listing every manifest whose ``subject`` is the image, which
  clients maintain where a registry has no referrers API.

All of them sort together, right after ``<algorithm>-<hex minus its last digit>...``,
so one page of the source repository's tag list that starts there
(``tags/list?n=&last=``) finds every one of them: an image with no artifact
costs that one request. A registry that ignores ``last`` and sends its whole
list at once (docker-registry 2.8) costs that one request too; one that
ignores it and pages is asked by a HEAD of each candidate tag. Each artifact found is compared with the backup
repository's tag of the same name by two HEADs, and copied (manifest byte for
byte, digest unchanged, an index with all its manifests) only when the backup
lacks it or holds another digest: the signature payload names the image's
digest, which the backup keeps, so ``cosign verify`` of the backup reference
finds ``<backup repository>:<algorithm>-<hex>.sig`` and checks it as upstream.

Artifacts pushed to a registry that serves the OCI 1.1 referrers API carry no
tag: ``GET /v2/<name>/referrers/<digest>`` lists them, one more request per
image. Each one the backup lacks is copied by digest (byte for byte), and is
then listed where clients look in the backup: by the backup registry's own
referrers API, else in the backup's ``<algorithm>-<hex>`` index tag, merged
with what that tag lists already. Where the source serves the API, its answer
stands for the source's index tag, which is not copied as such. A registry
without the API (it answers 404, or the like) is asked once an hour, not once
per image (``RegistryClient.referrers``). Warm, an image with such artifacts costs the
backup one request (its referrers query, or a GET of its index tag) and the
source none beyond the query: a digest the backup lists needs no HEAD.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.copier import Copier, CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference, InvalidReference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    OCI_INDEX,
    RegistryClient,
    RegistryError,
)

COSIGN_SUFFIXES: Final = (".att", ".sbom", ".sig")
# One page holds every candidate even with a few unrelated tags sorting among them (``sha256-<hex>-foo``).
PAGE_SIZE: Final = 16
MAX_PAGES: Final = 4
# No tag character sorts after "~": "<prefix>~" lies after every tag starting with <prefix>.
_AFTER_EVERY_TAG: Final = "~"


class ReferrerError(RuntimeError):
    """Finding or copying an image's referrers failed; ``transient`` as ``CopyError``'s."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def digest_tag(digest: str) -> str:
    """The referrers tag schema's tag of ``digest``: ``sha256:abc`` -> ``sha256-abc``."""
    algorithm, _colon, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"


def referrer_tags(digest: str) -> tuple[str, ...]:
    """Every tag that may hold an artifact referring to ``digest``, in lexical order."""
    base = digest_tag(digest)
    return (base, *(base + suffix for suffix in COSIGN_SUFFIXES))


def listing_start(digest: str) -> str:
    """The ``last`` of a tag list page whose first tags are those of ``referrer_tags(digest)``.

    It sorts after every tag below ``<algorithm>-<hex>`` and before it: the tag
    with the last hex digit lowered by one, then ``~``.
    """
    base = digest_tag(digest)
    return base[:-1] + chr(ord(base[-1]) - 1) + _AFTER_EVERY_TAG


def merged_index(stored: Mapping[str, Any] | None, referrers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The tag schema index ``stored`` (a new one when ``None``) listing also each of ``referrers`` it lacks.

    A descriptor is known by its digest; ``stored``'s own entries and fields stay as they are, the new
    ones follow in their order, and a digest listed twice in ``referrers`` is added once.
    """
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index.update(stored or {})
    manifests = list(index["manifests"])
    known = {entry["digest"] for entry in manifests}
    for referrer in referrers:
        if referrer["digest"] not in known:
            manifests.append(dict(referrer))
            known.add(referrer["digest"])
    index["manifests"] = manifests
    return index


@dataclass(frozen=True)
class ReferrerCopies:
    """Finds an image's referrers in its source repository and copies the missing ones to its backup's.

    ``copier`` must keep an index of artifacts byte for byte (the referrers tag
    schema's): the native copier does, skopeo would convert it.
    """

    backup_registry: RegistryClient
    copier: Copier

    def sync(self, source: ImageReference, digest: str, backup: ImageReference,
             source_registry: RegistryClient, credentials: CredentialStore) -> int:
        """Copy what refers to ``digest`` in ``source``'s repository into ``backup``'s; how many were copied.

        ``source_registry`` answers for the source (with its credentials),
        ``credentials`` go to the copier. Raises ``ReferrerError``.
        """
        repository = source.with_digest(None).with_tag(None)
        try:
            listed = source_registry.referrers(repository, digest)
            found = self._found(source, digest, source_registry)
            if listed is not None:
                found = [tag for tag in found if tag != digest_tag(digest)]
            copied = 0
            for tag in found:
                copied += self._sync_one(repository.with_tag(tag), backup.with_digest(None).with_tag(tag),
                                         source_registry, credentials)
            if listed:
                copied += self._sync_listed(listed, repository, digest, backup.with_digest(None).with_tag(None),
                                            credentials)
            return copied
        except RegistryError as error:
            raise ReferrerError(f"referrers of {digest}: {error}", transient=True) from None
        except CopyError as error:
            raise ReferrerError(f"referrers of {digest}: {error}", transient=error.transient) from None
        except (KeyError, TypeError, AttributeError, InvalidReference):
            raise ReferrerError(f"referrers of {digest}: a malformed manifest upstream") from None

    def _found(self, source: ImageReference, digest: str, registry: RegistryClient) -> list[str]:
        """The tags of ``referrer_tags(digest)`` that ``source``'s repository has."""
        wanted = referrer_tags(digest)
        repository = source.with_digest(None).with_tag(None)
        last = listing_start(digest)
        found: list[str] = []
        for _page in range(MAX_PAGES):
            page = registry.list_tags(repository, last=last, count=PAGE_SIZE)
            if page is None or not page.tags:
                return found
            found += [tag for tag in page.tags if tag in wanted]
            if page.tags[0] <= last:  # the registry ignores ``last``: all its tags at once, or ask each
                return found if not page.more else self._found_by_head(source, wanted, registry)
            if not page.more or page.tags[-1] >= wanted[-1]:
                return found
            last = page.tags[-1]
        return found

    @staticmethod
    def _found_by_head(source: ImageReference, wanted: tuple[str, ...], registry: RegistryClient) -> list[str]:
        repository = source.with_digest(None)
        return [tag for tag in wanted if registry.head_manifest(repository.with_tag(tag)) is not None]

    def _sync_one(self, source: ImageReference, destination: ImageReference, source_registry: RegistryClient,
                  credentials: CredentialStore) -> int:
        upstream = source_registry.head_manifest(source)
        if upstream is None:  # deleted since the listing
            return 0
        stored = self.backup_registry.head_manifest(destination)
        if stored is not None and stored.digest == upstream.digest:
            return 0
        self.copier.copy(source.with_tag(None).with_digest(upstream.digest), destination, credentials)
        copied = self.backup_registry.head_manifest(destination)
        if copied is None or copied.digest != upstream.digest:
            found = copied.digest if copied else "nothing"
            raise ReferrerError(f"{destination} has {found} after the copy, expected {upstream.digest}")
        return 1

    def _sync_listed(self, listed: tuple[dict[str, Any], ...], source: ImageReference, digest: str,
                     backup: ImageReference, credentials: CredentialStore) -> int:
        """Copy into the repository ``backup`` the manifests the repository ``source`` lists as referring to
        ``digest`` and the backup does not list yet, then list them there too; how many were copied."""
        index_tag = backup.with_tag(digest_tag(digest))
        served = self.backup_registry.referrers(backup, digest)
        index = merged_index(self._stored_index(index_tag), ()) if served is None else None
        present = {entry["digest"] for entry in (index["manifests"] if index is not None else served or ())}
        missing = list({entry["digest"]: entry for entry in listed if entry["digest"] not in present}.values())
        for entry in missing:
            target = backup.with_digest(entry["digest"])
            self.copier.copy(source.with_digest(entry["digest"]), target, credentials)
            if self.backup_registry.head_manifest(target) is None:
                raise ReferrerError(f"{target} is missing after the copy")
        if index is not None and missing:
            # Only once every manifest it lists is there: a client follows the index at once.
            self._put_index(index_tag, merged_index(index, missing))
        return len(missing)

    def _stored_index(self, tag: ImageReference) -> dict[str, Any] | None:
        """The index the backup's tag schema tag holds, ``None`` when there is none."""
        response = self.backup_registry.request(tag, "GET", f"/v2/{tag.path}/manifests/{tag.tag}",
                                                {"Accept": OCI_INDEX})
        if response.status == 404:
            return None
        if response.status != 200:
            raise RegistryError(tag, f"unexpected HTTP {response.status} to a manifest GET")
        try:
            index = json.loads(response.data)
        except ValueError:
            index = None
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or index.get("mediaType") != OCI_INDEX or not all(
                isinstance(entry, dict) and isinstance(entry.get("digest"), str) for entry in manifests):
            raise ReferrerError(f"{tag} holds something other than an OCI image index, which is left as it is")
        return index

    def _put_index(self, tag: ImageReference, index: dict[str, Any]) -> None:
        response = self.backup_registry.request(tag, "PUT", f"/v2/{tag.path}/manifests/{tag.tag}",
                                                {"Content-Type": OCI_INDEX}, push=True,
                                                body=json.dumps(index, separators=(",", ":")))
        if response.status != 201:
            raise RegistryError(tag, f"HTTP {response.status} to the PUT of its referrers index")
