"""Both copiers make the same backups: skopeo (the reference) and the native copier copy the same images
into fresh repositories, and the results are compared from the registry's side.

Compared per image: the digest the tag resolves to (the source's), the bytes of every manifest
reachable from it (an index's children included), the set of blobs those manifests reference, each
present in the destination repository, and the repository's tags. Shapes: OCI manifest and index,
Docker schema 2 manifest and manifest list, a digest-only source reference, and images sharing
layers; against the lab's registry (Debian's docker-registry 2.8) and distribution v3.
"""
from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.copier import Copier
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.manifests import parse_manifest
from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference, parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import MANIFEST_MEDIA_TYPES, RegistryClient
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from lab.distribution import DistributionRegistries
from lab.images import ImageSpec, Layer
from lab.lab import RegistryRequest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@dataclass(frozen=True)
class Registries:
    """A source and a backup registry of one implementation, and what a test needs to use and observe them."""

    name: str
    source: str
    backup: str
    certs_dir: Path
    authfile: Path
    push: Callable[[tuple[ImageSpec, ...]], dict[str, str]]  # into the source: {ref_name: digest}
    source_requests: Callable[[str], list[RegistryRequest]]  # the source's, for a repository prefix

    def credentials(self) -> CredentialStore:
        return CredentialStore.from_authfile(self.authfile)

    def copiers(self) -> dict[str, Copier]:
        return {"skopeo": Skopeo(certs_dir=self.certs_dir),
                "native": NativeCopier(RegistryClient(self.credentials(), certs_dir=self.certs_dir))}

    def skopeo(self, *args: str) -> str:
        result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def distribution(lab):
    registries = DistributionRegistries(lab).up()
    yield registries
    registries.down()


@pytest.fixture(scope="module", params=["docker-registry-2.8", "distribution-v3"])
def registries(request, lab) -> Registries:
    if request.param == "docker-registry-2.8":
        return Registries(request.param, lab.config.source_registry, lab.config.backup_registry, lab.certs_dir,
                          lab.backup_authfile, lab.push_images,
                          lambda prefix: lab.registry_requests("registry-source", prefix))
    dist = request.getfixturevalue("distribution")
    return Registries(request.param, dist.source, dist.backup, lab.certs_dir, dist.authfile,
                      lambda specs: lab.push_images(specs, registry=dist.source, authfile=dist.authfile),
                      lambda prefix: dist.requests("dist-source", prefix))


class Reader:
    """Reads a registry with plain urllib and basic auth: independent of both copiers."""

    def __init__(self, registries: Registries) -> None:
        self._context = ssl.create_default_context(cafile=str(registries.certs_dir / "ca.crt"))
        auths = json.loads(registries.authfile.read_text())["auths"]
        self._auth = {host: entry["auth"] for host, entry in auths.items()}

    def _open(self, method: str, url_registry: str, path: str, accept: str | None = None):
        request = urllib.request.Request(f"https://{url_registry}{path}", method=method)
        if url_registry in self._auth:
            request.add_header("Authorization", f"Basic {self._auth[url_registry]}")
        if accept:
            request.add_header("Accept", accept)
        try:
            return urllib.request.urlopen(request, context=self._context, timeout=30)
        except urllib.error.HTTPError as error:
            return error

    def manifest(self, ref: ImageReference) -> tuple[str, bytes, str] | None:
        """(digest header, bytes, media type) of ``ref``'s manifest, or ``None``."""
        response = self._open("GET", ref.registry, f"/v2/{ref.path}/manifests/{ref.digest or ref.tag}",
                              ", ".join(MANIFEST_MEDIA_TYPES))
        with response:
            if response.status == 404:
                return None
            assert response.status == 200, (ref, response.status)
            return (response.headers["Docker-Content-Digest"], response.read(),
                    response.headers["Content-Type"].partition(";")[0])

    def has_blob(self, registry: str, repository: str, digest: str) -> bool:
        with self._open("HEAD", registry, f"/v2/{repository}/blobs/{digest}") as response:
            return response.status == 200

    def tags(self, registry: str, repository: str) -> list[str]:
        with self._open("GET", registry, f"/v2/{repository}/tags/list") as response:
            return sorted(json.loads(response.read())["tags"] or [])

    def image(self, ref: ImageReference) -> dict:
        """Everything compared about the image ``ref`` names: top digest, each manifest's bytes and type,
        the blobs and whether each is in the repository, the repository's tags."""
        top = self.manifest(ref)
        assert top is not None, f"{ref} is not there"
        manifests, blobs, pending = {}, {}, [top]
        while pending:
            digest, content, media_type = pending.pop()
            manifests[digest] = (media_type, content)
            parsed = parse_manifest(content, media_type)
            for child in parsed.children:
                found = self.manifest(ref.with_tag(None).with_digest(child.digest))
                assert found is not None, f"{ref}: child {child.digest} is missing"
                pending.append(found)
            for blob in parsed.blobs:
                blobs[blob.digest] = self.has_blob(ref.registry, ref.path, blob.digest)
        return {"digest": top[0], "manifests": manifests, "blobs": blobs,
                "tags": self.tags(ref.registry, ref.path)}


def spec(repository: str, *layers: Layer, platforms=("amd64",)) -> ImageSpec:
    return ImageSpec(repository, "1.0", layers, platforms=platforms)


@pytest.fixture(scope="module")
def catalogue(registries) -> dict[str, str]:
    """Source references by shape, freshly pushed for this module (OCI from the lab's layout; Docker
    schema 2 converted from them by skopeo)."""
    run = f"conformance/{uuid.uuid4().hex[:8]}"
    base = Layer(f"{run}-base", 96 * 1024)
    specs = {
        "oci-manifest": spec(f"{run}/oci-manifest", base, Layer(f"{run}-own-1", 32 * 1024)),
        "oci-index": spec(f"{run}/oci-index", base, Layer(f"{run}-own-2", 16 * 1024), platforms=("amd64", "arm64")),
        "shared-a": spec(f"{run}/shared-a", base, Layer(f"{run}-own-3", 8 * 1024)),
        "shared-b": spec(f"{run}/shared-b", base, Layer(f"{run}-own-4", 8 * 1024)),
    }
    digests = registries.push(tuple(specs.values()))
    images = {shape: f"{registries.source}/{one.ref_name}" for shape, one in specs.items()}
    for shape, oci in (("docker-manifest", "oci-manifest"), ("docker-list", "oci-index")):
        images[shape] = f"{registries.source}/{run}/{shape}:1.0"
        registries.skopeo("copy", "--all", "--format=v2s2", f"--src-cert-dir={registries.certs_dir}",
                          f"--dest-cert-dir={registries.certs_dir}", f"--authfile={registries.authfile}",
                          f"docker://{images[oci]}", f"docker://{images[shape]}")
    index = specs["oci-index"]
    images["digest-only"] = f"{registries.source}/{index.repository}@{digests[index.ref_name]}"
    return images


def copy_with(registries: Registries, copier_name: str, source: str, repository: str) -> ImageReference:
    destination = parse_reference(f"{registries.backup}/{repository}/{copier_name}:backup")
    copier = registries.copiers()[copier_name]
    copier.copy(parse_reference(source), destination, registries.credentials())
    return destination


@pytest.mark.parametrize("shape", ["oci-manifest", "oci-index", "docker-manifest", "docker-list", "digest-only"])
def test_both_copiers_make_identical_backups(registries, catalogue, shape):
    reader = Reader(registries)
    source = parse_reference(catalogue[shape])
    expected = reader.manifest(source)
    repository = f"conformance/{uuid.uuid4().hex[:10]}"
    copies = {name: reader.image(copy_with(registries, name, catalogue[shape], repository))
              for name in ("skopeo", "native")}

    skopeo, native = copies["skopeo"], copies["native"]
    assert skopeo["digest"] == native["digest"] == expected[0]
    assert skopeo["manifests"] == native["manifests"]  # same bytes, same media types, every platform
    assert skopeo["blobs"] == native["blobs"] and all(native["blobs"].values())
    assert skopeo["tags"] == native["tags"] == ["backup"]
    wanted_type = {"docker-manifest": DOCKER_MANIFEST, "docker-list": DOCKER_LIST}.get(shape)
    if wanted_type:
        assert native["manifests"][native["digest"]][0] == wanted_type
    if shape in ("oci-index", "docker-list", "digest-only"):
        assert len(native["manifests"]) == 3  # the index and both platforms


def test_images_sharing_layers_are_identical_and_the_shared_blob_crosses_once(registries, catalogue):
    reader = Reader(registries)
    repository = f"conformance/{uuid.uuid4().hex[:10]}"
    for name in ("skopeo", "native"):
        for shape in ("shared-a", "shared-b"):
            destination = parse_reference(f"{registries.backup}/{repository}/{name}-{shape}:backup")
            registries.copiers()[name].copy(parse_reference(catalogue[shape]), destination, registries.credentials())
    for shape in ("shared-a", "shared-b"):
        skopeo = reader.image(parse_reference(f"{registries.backup}/{repository}/skopeo-{shape}:backup"))
        native = reader.image(parse_reference(f"{registries.backup}/{repository}/native-{shape}:backup"))
        assert (skopeo["digest"], skopeo["manifests"], skopeo["blobs"]) == \
               (native["digest"], native["manifests"], native["blobs"])


def blob_gets(requests: list[RegistryRequest]) -> Counter:
    return Counter(r.path.rsplit("/", 1)[-1] for r in requests if r.method == "GET" and "/blobs/sha256:" in r.path)


def test_a_blob_shared_by_many_images_is_fetched_from_the_source_once(registries):
    run = f"conformance-shared/{uuid.uuid4().hex[:8]}"
    base = Layer(f"{run}-base", 512 * 1024)
    specs = tuple(spec(f"{run}/app{n}", base, Layer(f"{run}-own-{n}", 16 * 1024),
                       platforms=("amd64", "arm64") if n % 4 == 0 else ("amd64",)) for n in range(8))
    registries.push(specs)
    copier = registries.copiers()["native"]
    credentials = registries.credentials()
    target = f"conformance/{uuid.uuid4().hex[:10]}"

    def copy(one: ImageSpec) -> None:
        copier.copy(parse_reference(f"{registries.source}/{one.ref_name}"),
                    parse_reference(f"{registries.backup}/{target}/{one.repository.rsplit('/', 1)[-1]}:1.0"),
                    credentials)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(copy, specs))

    gets = blob_gets(registries.source_requests(run))
    assert gets and max(gets.values()) == 1, gets  # every blob, the shared base included, crossed once
    reader = Reader(registries)
    for one in specs:
        copied = reader.image(parse_reference(f"{registries.backup}/{target}/{one.repository.rsplit('/', 1)[-1]}:1.0"))
        assert all(copied["blobs"].values())
