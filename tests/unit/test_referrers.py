"""The tags that hold an image's referrers, the one tag list page that finds them all, the index tag that lists
what the referrers API listed upstream, and the answers that say a registry has no such API."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from strategies import digests, tag_strategy

from ansible_collections.imageclone.backup.plugins.module_utils.reference import tag_problem
from ansible_collections.imageclone.backup.plugins.module_utils.referrers import (
    digest_tag,
    listing_start,
    merged_index,
    referrer_tags,
)
from ansible_collections.imageclone.backup.plugins.module_utils.registry import OCI_INDEX, referrers_api_absent

DIGEST = "sha256:" + "ab" * 32


def test_cosign_and_oci_tags_of_a_digest():
    assert digest_tag(DIGEST) == "sha256-" + "ab" * 32
    assert referrer_tags(DIGEST) == tuple(f"sha256-{'ab' * 32}{suffix}" for suffix in ("", ".att", ".sbom", ".sig"))


@given(digests)
def test_referrer_tags_are_valid_tags_in_lexical_order(digest):
    tags = referrer_tags(digest)
    assert list(tags) == sorted(tags)
    assert all(tag_problem(tag) is None for tag in tags if len(tag) <= 128)
    assert listing_start(digest) < tags[0]


@given(digests, st.one_of(tag_strategy(0, 140), st.sampled_from(["sha256-", "sha512-", "latest"])))
def test_a_tag_list_page_after_the_start_begins_with_the_referrer_tags(digest, tag):
    """Every tag sorting after ``listing_start`` sorts at or after ``<algorithm>-<hex>``: a page that starts
    there skips no referrer tag and lists nothing before them."""
    base = digest_tag(digest)
    near = base[: len(tag) % len(base)] + tag  # tags sharing a prefix with the referrer tags
    for candidate in (tag, near):
        assert (candidate > listing_start(digest)) == (candidate >= base)


def test_a_digest_ending_in_zero_starts_before_it():
    digest = "sha256:" + "1" * 63 + "0"
    assert listing_start(digest) < digest_tag(digest)
    assert listing_start(digest) > "sha256-" + "1" * 63 + "-"


def descriptor(digest_byte: str, artifact_type: str = "application/vnd.dev.cosign.artifact.sig.v1+json") -> dict:
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + digest_byte * 64,
            "size": 500, "artifactType": artifact_type}


def test_a_new_index_lists_the_referrers_once_each():
    index = merged_index(None, [descriptor("a"), descriptor("b"), descriptor("a")])
    assert index == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor("a"), descriptor("b")]}


def test_an_existing_index_keeps_its_entries_and_fields_and_gets_the_missing_ones_after_them():
    kept = {**descriptor("a", "application/spdx+json"), "annotations": {"org.example": "kept"}}
    stored = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [kept], "annotations": {"by": "oras"}}
    index = merged_index(stored, [descriptor("a"), descriptor("c")])
    assert index == {**stored, "manifests": [kept, descriptor("c")]}
    assert stored["manifests"] == [kept]  # not changed in place


def test_an_index_lacking_nothing_is_unchanged():
    stored = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor("a"), descriptor("b")]}
    assert merged_index(stored, [descriptor("b")]) == stored


def test_an_unknown_route_or_a_page_that_is_no_index_means_no_referrers_api():
    for status in (404, 400, 405, 406):
        assert referrers_api_absent(status, "application/json")
    assert referrers_api_absent(200, "text/html; charset=utf-8")
    assert not referrers_api_absent(200, OCI_INDEX)
    assert not referrers_api_absent(200, f"{OCI_INDEX}; charset=utf-8")
    for status in (401, 403, 429, 500, 502):  # errors of a registry that may have the API, not an answer
        assert not referrers_api_absent(status, "application/json")
