"""The tags that hold an image's referrers, and the one tag list page that finds them all."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from strategies import digests, tag_strategy

from ansible_collections.imageclone.backup.plugins.module_utils.reference import tag_problem
from ansible_collections.imageclone.backup.plugins.module_utils.referrers import (
    digest_tag,
    listing_start,
    referrer_tags,
)

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
