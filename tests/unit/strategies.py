"""Hypothesis strategies that generate valid image references.

Everything drawn here follows the distribution/reference grammar (the one docker's
ParseNormalizedNamed accepts): domains of labels, IPv4 or bracketed IPv6 hosts with an
optional port, lowercase path components joined by ".", "_", "__" or "-"s, tags of up to
128 characters and sha256/sha512 digests. The references come out normalized, as
parse_reference returns them. Tests import these with `from strategies import ...`:
pytest puts this directory on sys.path.

The test modules choose their own variants through the parameters (host names, tag
lengths, how many path components, whether bare names are drawn), so each one keeps the
distribution it was written with.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import assume
from hypothesis import strategies as st

from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    is_domain_like,
)

LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
TAG_FIRST = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"


def joined(
    first: st.SearchStrategy[str],
    separators: st.SearchStrategy[str],
    rest: st.SearchStrategy[str],
    max_parts: int,
) -> st.SearchStrategy[str]:
    """first (separator rest)*: grammar shapes, cheaper to draw than from_regex."""
    pairs = st.lists(st.tuples(separators, rest), max_size=max_parts)
    return st.builds(
        lambda head, tail: head + "".join(s + r for s, r in tail), first, pairs
    )


def tag_strategy(min_rest: int, max_rest: int) -> st.SearchStrategy[str]:
    """A tag: one word character, then min_rest to max_rest word characters, "." or "-"."""
    return st.builds(
        str.__add__,
        st.sampled_from(TAG_FIRST),
        st.text(TAG_FIRST + ".-", min_size=min_rest, max_size=max_rest),
    )


alnum = st.text(LOWER_ALNUM, min_size=1, max_size=6)
hex_group = st.text("0123456789abcdefABCDEF", max_size=4)
label = joined(alnum, st.sampled_from(["-", "--"]), alnum, 1)
components = joined(alnum, st.sampled_from([".", "_", "__", "-", "--"]), alnum, 3)
domains = st.lists(label, min_size=2, max_size=3).map(".".join)
ipv6_hosts = st.builds(
    lambda head, tail: f"[{head}:{tail}]",
    hex_group,
    joined(hex_group, st.just(":"), hex_group, 2),
)
digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda raw: "sha256:" + raw.hex()),
    st.binary(min_size=64, max_size=64).map(lambda raw: "sha512:" + raw.hex()),
)


def hosts(names: Sequence[str], *, with_ipv6: bool) -> st.SearchStrategy[str]:
    """One of names, a generated domain, or (with_ipv6) a generated bracketed IPv6."""
    choices = [st.sampled_from(list(names)), domains]
    if with_ipv6:
        choices.append(ipv6_hosts)
    return st.one_of(*choices)


def registries(host_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """host[:port], as normalized references carry it (never index.docker.io)."""
    return st.builds(
        lambda host, port: host + (f":{port}" if port is not None else ""),
        host_strategy,
        st.none() | st.integers(min_value=0, max_value=65535),
    ).filter(
        lambda registry: registry != "index.docker.io" and is_domain_like(registry)
    )


def tags(short_max: int, long_min: int) -> st.SearchStrategy[str]:
    """Short tags (1 to short_max + 1 characters) or long ones (long_min + 1 to 128)."""
    return st.one_of(
        tag_strategy(0, short_max),
        tag_strategy(long_min, 127),
    )


@st.composite
def references(
    draw: st.DrawFn,
    *,
    registries: st.SearchStrategy[str],
    tags: st.SearchStrategy[str],
    max_components: int,
    bare_names: bool,
    components: st.SearchStrategy[str] = components,
    digests: st.SearchStrategy[str] = digests,
) -> ImageReference:
    """Valid normalized references of 1 to max_components path components.

    bare_names=True draws the tag and the digest independently, each possibly absent:
    tagged, digest-only, both, or bare names. bare_names=False draws one of tagged,
    digest-only or both, never a bare name.
    """
    registry = draw(registries)
    parts = draw(st.lists(components, min_size=1, max_size=max_components))
    if registry == "docker.io" and len(parts) == 1:
        parts.insert(0, "library")
    if bare_names:
        tag = draw(st.none() | tags)
        digest = draw(st.none() | digests)
    else:
        tag, digest = draw(
            st.one_of(
                st.tuples(tags, st.none()),
                st.tuples(st.none(), digests),
                st.tuples(tags, digests),
            )
        )
    path = "/".join(parts)
    assume(len(registry) + 1 + len(path) <= 255)
    return ImageReference(registry, path, tag, digest)
