"""What a copier reads from a manifest: its children, its blobs, and nothing it cannot copy faithfully."""
from __future__ import annotations

import json

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.manifests import (
    Descriptor,
    ManifestProblem,
    content_digest,
    parse_manifest,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def test_an_image_manifest_references_its_config_then_its_layers_and_keeps_its_bytes():
    # Spacing a serializer would not reproduce: the digest is of these exact bytes.
    content = json.dumps({"schemaVersion": 2, "config": {"digest": A, "size": 3},
                          "layers": [{"digest": B, "size": 10}, {"digest": C, "size": 20}]}, indent=3).encode()
    manifest = parse_manifest(content, f"{DOCKER_MANIFEST}; charset=utf-8")
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.blobs == (Descriptor(A, 3), Descriptor(B, 10), Descriptor(C, 20))
    assert manifest.children == () and not manifest.is_index
    assert manifest.content == content and manifest.digest == content_digest(content)


def test_an_index_references_its_children_and_a_generic_content_type_falls_back_to_the_media_type_field():
    content = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [{"digest": A, "size": 5}, {"digest": B, "size": 6}]}).encode()
    manifest = parse_manifest(content, "application/json")
    assert manifest.is_index and manifest.media_type == OCI_INDEX
    assert manifest.children == (Descriptor(A, 5), Descriptor(B, 6)) and manifest.blobs == ()


@pytest.mark.parametrize("content, content_type, problem", [
    (b'{"schemaVersion": 1, "fsLayers": []}', "application/vnd.docker.distribution.manifest.v1+prettyjws",
     "schema 1"),
    (b"not json", OCI_MANIFEST, "not JSON"),
    (b'{"schemaVersion": 2, "mediaType": "application/x-unknown"}', "", "unknown manifest media type"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:../../etc", "size": 1}, "layers": []}).encode(),
     OCI_MANIFEST, "invalid digest"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": A}, "layers": []}).encode(), OCI_MANIFEST,
     "without digest and size"),
    (json.dumps({"schemaVersion": 2, "manifests": {}}).encode(), OCI_INDEX, "not a list"),
])
def test_what_cannot_be_copied_faithfully_is_refused_with_a_reason(content, content_type, problem):
    with pytest.raises(ManifestProblem, match=problem):
        parse_manifest(content, content_type)
