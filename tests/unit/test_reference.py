"""Tests for image reference parsing and normalization (distribution/reference grammar)."""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import hosts, references, registries, tags

from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
    split_domain,
)

HEX64 = "0123456789abcdef" * 4
SHA256 = f"sha256:{HEX64}"
SHA512 = f"sha512:{HEX64 * 2}"
PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# (input, registry, path, tag, digest): docker's ParseNormalizedNamed + TagNameOnly.
VALID = [
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
    ("library/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/library/nginx:1.27", "docker.io", "library/nginx", "1.27", None),
    ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/library/debian", "docker.io", "library/debian", "latest", None),
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", "latest", None),
    ("docker/docker", "docker.io", "docker/docker", "latest", None),
    ("foo/bar/baz:v1", "docker.io", "foo/bar/baz", "v1", None),
    ("docker.io/library", "docker.io", "library/library", "latest", None),
    ("localhost", "docker.io", "library/localhost", "latest", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/foo", "localhost:5000", "foo", "latest", None),
    ("localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", None),
    ("example.com:8080/a/b:tag", "example.com:8080", "a/b", "tag", None),
    ("127.0.0.1:5001/x", "127.0.0.1:5001", "x", "latest", None),
    (
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000",
        "library/debian",
        "latest",
        None,
    ),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", "latest", None),
    ("192.168.0.1", "docker.io", "library/192.168.0.1", "latest", None),
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    ("quay.io/a/b", "quay.io", "a/b", "latest", None),
    ("[::1]:5000/foo", "[::1]:5000", "foo", "latest", None),
    ("[::1]/foo", "[::1]", "foo", "latest", None),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", "latest", None),
    ("[2001:DB8::1]:5000/a:t", "[2001:DB8::1]:5000", "a", "t", None),
    ("nginx@" + SHA256, "docker.io", "library/nginx", None, SHA256),
    ("nginx:1.27@" + SHA256, "docker.io", "library/nginx", "1.27", SHA256),
    ("quay.io/a/b@" + SHA256, "quay.io", "a/b", None, SHA256),
    ("x/y:t@" + SHA256, "docker.io", "x/y", "t", SHA256),
    ("ghcr.io/o/r@" + SHA512, "ghcr.io", "o/r", None, SHA512),
    ("ghcr.io/o/r@sha384:" + "ab" * 48, "ghcr.io", "o/r", None, "sha384:" + "ab" * 48),
    (
        "Foo/bar",
        "Foo",
        "bar",
        "latest",
        None,
    ),  # docker: uppercase first component is a host
    ("LOCALHOST/bar", "LOCALHOST", "bar", "latest", None),
    ("xn--bcher-kva.example/foo", "xn--bcher-kva.example", "foo", "latest", None),
    ("a.b/c__d/e-f--g/h.i_j:T_a.g-1", "a.b", "c__d/e-f--g/h.i_j", "T_a.g-1", None),
    ("nginx:_", "docker.io", "library/nginx", "_", None),
    ("nginx:" + "a" * 128, "docker.io", "library/nginx", "a" * 128, None),
    ("a" * 237, "docker.io", "library/" + "a" * 237, "latest", None),
    ("docker.io/library/" + HEX64, "docker.io", "library/" + HEX64, "latest", None),
    (HEX64 + ":latest", "docker.io", "library/" + HEX64, "latest", None),
    ("foo.bar/baz:" + "0" * 3, "foo.bar", "baz", "000", None),
]

# (input, fragment of the reason)
INVALID = [
    ("", "empty"),
    (" nginx", "whitespace"),
    ("nginx ", "whitespace"),
    ("ngi nx", "whitespace"),
    ("nginx\n", "whitespace"),
    ("nginx\t:1", "whitespace"),
    ("nginx\x00", "control"),
    ("nginx\x7f", "control"),
    ("nginx\x1b[0m", "control"),
    ("nginxé", "non-ASCII"),
    ("ñ/foo", "non-ASCII"),
    ("ｎｇｉｎｘ", "non-ASCII"),
    ("nginx\u200b", "non-ASCII"),
    ("nginx:1.2\u00a0", "non-ASCII"),
    ("Nginx", "lowercase"),
    ("nginx/Foo", "lowercase"),
    ("docker.io/library/Nginx", "lowercase"),
    ("quay.io/Org/repo", "lowercase"),
    ("/nginx", "empty component"),
    ("nginx/", "empty component"),
    ("foo//bar", "empty component"),
    ("docker.io/", "empty component"),
    ("localhost/", "empty"),
    ("-nginx", "separator"),
    ("nginx-", "separator"),
    (".nginx", "separator"),
    ("nginx.", "separator"),
    ("_nginx", "separator"),
    ("foo/_bar", "separator"),
    ("ngi..nx", "separator"),
    ("ngi._nx", "separator"),
    ("ngi___nx", "separator"),
    ("ngi-.nx", "separator"),
    (HEX64, "image ID"),
    ("a" * 238, "more than 255"),
    ("quay.io/" + "/".join(["abcdefghij"] * 23) + "x" * 3, "more than 255"),
    ("nginx:", "tag is empty"),
    ("nginx:.tag", "tag"),
    ("nginx:-tag", "tag"),
    ("nginx:" + "a" * 129, "more than 128"),
    ("nginx:a:b", "more than one ':'"),
    ("nginx:t!g", "invalid character"),
    ("nginx@", "digest is empty"),
    ("nginx@sha256", "algorithm:hex"),
    ("nginx@sha256:abc", "64 lowercase hex"),
    ("nginx@sha256:" + HEX64.upper(), "64 lowercase hex"),
    ("nginx@sha256:" + HEX64 + "0", "64 lowercase hex"),
    ("nginx@sha512:" + HEX64, "128 lowercase hex"),
    ("nginx@md5:" + HEX64[:32], "not supported"),
    ("nginx@SHA256:" + HEX64, "not supported"),
    ("nginx@sha256+b64:" + HEX64, "not supported"),
    ("nginx@@" + SHA256, "more than one '@'"),
    ("nginx@" + SHA256 + "@" + SHA256, "more than one '@'"),
    ("nginx@" + SHA256 + ":tag", "64 lowercase hex"),
    ("localhost:abc/foo", "invalid port"),
    ("localhost:/foo", "invalid port"),
    ("example.com:5000:6000/foo", "invalid port"),
    ("-foo.com/bar", "host label"),
    ("foo-.com/bar", "host label"),
    ("foo..com/bar", "host label"),
    ("my_reg.io/foo", "host label"),  # docker yields a registry-less reference here
    (".foo.com/bar", "host label"),
    ("[::1/foo", "IPv6"),
    ("[zz::1]:5000/foo", "IPv6"),
    ("[]:5000/foo", "IPv6"),
    ("[::1]x/foo", "invalid port"),
    ("::1/foo", "host is empty"),
    ("nginx:1.0/foo", "invalid port"),
    ("foo$bar", "invalid character"),
    ("foo/bar!", "invalid character"),
    ("foo\\bar", "invalid character"),
    ("foo/[bar]", "invalid character"),
    ("a" * 2000, "no valid reference"),
]


@pytest.mark.parametrize(("text", "registry", "path", "tag", "digest"), VALID)
def test_parse_valid(
    text: str, registry: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (
        registry,
        path,
        tag,
        digest,
    )
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_parse_invalid_names_input_and_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert info.value.reference == text
    assert repr(text) in str(info.value)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("quay.io/a/b@" + SHA256, "quay.io/a/b@" + SHA256),
        ("x/y:t@" + SHA256, "docker.io/x/y:t@" + SHA256),
        ("localhost:5000/foo", "localhost:5000/foo:latest"),
        ("[::1]:5000/foo:t", "[::1]:5000/foo:t"),
    ],
)
def test_str_is_fully_qualified(text: str, canonical: str) -> None:
    assert str(parse_reference(text)) == canonical


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("docker.io/library/nginx:1.27", "nginx:1.27"),
        ("docker.io/foo/bar", "foo/bar:latest"),
        ("docker.io/library/foo/bar:1", "library/foo/bar:1"),
        ("nginx@" + SHA256, "nginx@" + SHA256),
        ("quay.io/a/b:1", "quay.io/a/b:1"),
        ("localhost:5000/foo:t", "localhost:5000/foo:t"),
        # Shortening these would change their meaning: docker does, we do not.
        ("docker.io/foo.bar/baz:1", "docker.io/foo.bar/baz:1"),
        ("docker.io/localhost/baz:1", "docker.io/localhost/baz:1"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert parse_reference(text).familiar == familiar


def test_familiar_keeps_library_before_image_id() -> None:
    ref = ImageReference("docker.io", "library/" + HEX64)
    assert ref.familiar == "library/" + HEX64
    assert parse_reference(ref.familiar, default_tag=None) == ref


def test_default_tag_can_be_disabled_or_changed() -> None:
    assert parse_reference("nginx", default_tag=None).tag is None
    assert parse_reference("nginx:1", default_tag=None).tag == "1"
    assert parse_reference("nginx", default_tag="stable").tag == "stable"
    assert parse_reference("nginx@" + SHA256).tag is None
    with pytest.raises(ValueError, match="default_tag"):
        parse_reference("nginx", default_tag="-bad")


def test_non_str_is_type_error() -> None:
    with pytest.raises(TypeError):
        parse_reference(b"nginx")  # type: ignore[arg-type]


def test_repository_and_modifiers() -> None:
    ref = parse_reference("quay.io/a/b:1@" + SHA256)
    assert ref.repository == "quay.io/a/b"
    assert str(ref.without_digest()) == "quay.io/a/b:1"
    assert str(ref.without_tag()) == "quay.io/a/b@" + SHA256
    assert str(ref.with_tag("2")) == "quay.io/a/b:2@" + SHA256
    assert str(ref.without_digest().with_digest(SHA512)) == "quay.io/a/b:1@" + SHA512
    with pytest.raises(InvalidReference, match="tag"):
        ref.with_tag(".bad")
    with pytest.raises(InvalidReference, match="digest"):
        ref.with_digest("sha256:abc")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (("index.docker.io", "library/x"), "docker.io"),
        (("docker.io", "nginx"), "library/nginx"),
        (("foo", "bar"), "Docker Hub path"),
        (("quay.io", "Foo"), "lowercase"),
        (("quay.io", ""), "empty"),
        (("quay.io", "a", ""), "tag is empty"),
        (("quay.io", "a", None, "sha256:0"), "64 lowercase hex"),
        (("bad_host.io", "a"), "host label"),
        (("quay.io", "a" * 250), "more than 255"),
    ],
)
def test_direct_construction_validates(fields: tuple, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        ImageReference(*fields)
    assert reason in info.value.reason


def test_direct_construction_type_checks() -> None:
    with pytest.raises(TypeError):
        ImageReference("quay.io", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ImageReference("quay.io", "a", 1)  # type: ignore[arg-type]


def test_invalid_reference_is_value_error_and_pickles() -> None:
    error = InvalidReference("Bad", "must be lowercase")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reference, copy.reason, str(copy)) == (
        "Bad",
        "must be lowercase",
        str(error),
    )


def test_split_domain_matches_docker() -> None:
    assert split_domain("nginx:1") == ("docker.io", "library/nginx:1")
    assert split_domain("foo/bar") == ("docker.io", "foo/bar")
    assert split_domain("index.docker.io/foo") == ("docker.io", "library/foo")
    assert split_domain("localhost/foo") == ("localhost", "foo")
    assert split_domain("Foo/bar") == ("Foo", "bar")


# --- An independent transcription of distribution/reference, used as an oracle. ---

_GO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_GO_REMOTE = rf"{_GO_COMPONENT}(?:/{_GO_COMPONENT})*"
_GO_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_GO_DOMAIN = rf"(?:{_GO_LABEL}(?:\.{_GO_LABEL})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_GO_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_GO_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_GO_REFERENCE = re.compile(
    rf"((?:{_GO_DOMAIN}/)?{_GO_REMOTE})(?::({_GO_TAG}))?(?:@({_GO_DIGEST}))?"
)
_GO_NAME = re.compile(rf"(?:({_GO_DOMAIN})/)?({_GO_REMOTE})")
_GO_DIGEST_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128}


def _go_split_docker_domain(name: str) -> tuple[str, str]:
    if "/" not in name:
        return "docker.io", "library/" + name
    first, rest = name.split("/", 1)
    if first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remote = ("docker.io" if first == "index.docker.io" else first), rest
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = "library/" + remote
    return domain, remote


def _go_parse_normalized_named(
    text: str,
) -> tuple[str, str, str | None, str | None] | None:
    """distribution/reference ParseNormalizedNamed; None when it returns an error."""
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return None
    domain, remainder = _go_split_docker_domain(text)
    if remainder.split(":", 1)[0].lower() != remainder.split(":", 1)[0]:
        return None
    match = _GO_REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or len(match.group(1)) > 255:
        return None
    name, tag, digest = match.groups()
    if digest is not None:
        algorithm, encoded = digest.split(":", 1)
        size = _GO_DIGEST_SIZES.get(algorithm)
        if size is None or not re.fullmatch(rf"[a-f0-9]{{{size}}}", encoded):
            return None
    name_match = _GO_NAME.fullmatch(name)
    assert name_match is not None
    return name_match.group(1) or "", name_match.group(2), tag, digest


# Near-valid pieces, valid and invalid, so that generated strings hit every rule.
_REGISTRY_PARTS = [
    "",
    "docker.io/",
    "index.docker.io/",
    "localhost/",
    "localhost:5000/",
    "Foo/",
    "foo/",
    "my_reg.io/",
    "[::1]:5000/",
    "[0]/",
    "a.b:x/",
    "FOO_BAR/",
    "-a.io/",
    "library/",
    "127.0.0.1/",
    "::1/",
    "example.com:5000:1/",
    "docker.io:443/",
    "LOCALHOST/",
    "a..b/",
]
_PATH_PARTS = [
    "nginx",
    "library",
    "a_b",
    "a__b",
    "a___b",
    "a..b",
    "a.b",
    "a-b",
    "a--b",
    "-a",
    "a-",
    "Nginx",
    "",
    HEX64,
    "a" * 120,
    "a.io",
    "localhost",
    "é",
]
_TAG_PARTS = [
    "",
    ":",
    ":latest",
    ":v1.0",
    ":_x",
    ":.x",
    ":-x",
    ":" + "a" * 128,
    ":" + "a" * 129,
    ":a:b",
    ":A_b",
    ": x",
]
_DIGEST_PARTS = [
    "",
    "@",
    "@" + SHA256,
    "@sha256:" + HEX64.upper(),
    "@" + SHA512,
    "@sha384:" + "ab" * 48,
    "@md5:" + HEX64[:32],
    "@sha256:abc",
    "@sha256+b64:" + HEX64,
    "@SHA256:" + HEX64,
    "@" + SHA256 + "@" + SHA256,
]
structured_text = st.builds(
    lambda registry, path, tag, digest: registry + "/".join(path) + tag + digest,
    st.sampled_from(_REGISTRY_PARTS),
    st.lists(st.sampled_from(_PATH_PARTS), min_size=1, max_size=3),
    st.sampled_from(_TAG_PARTS),
    st.sampled_from(_DIGEST_PARTS),
)
alphabet_text = st.text(alphabet="abcAB019._-/:@[]+ ", max_size=40)
any_text = st.one_of(st.text(max_size=60), alphabet_text, structured_text)


@PROPERTY
@given(any_text)
def test_any_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as error:
        assert error.reference == text
        return
    assert parse_reference(str(ref)) == ref


@PROPERTY
@given(st.one_of(alphabet_text, structured_text))
def test_agrees_with_distribution_reference(text: str) -> None:
    expected = _go_parse_normalized_named(text)
    if expected is None or expected[0] == "":
        # "" is docker's registry-less result for hosts like my_reg.io: refused here.
        with pytest.raises(InvalidReference):
            parse_reference(text)
        return
    ref = parse_reference(text, default_tag=None)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == expected


# --- Generated valid references. ---

_references = references(
    registries=registries(
        hosts(
            [
                "docker.io",
                "quay.io",
                "ghcr.io",
                "registry.k8s.io",
                "localhost",
                "127.0.0.1",
                "Quay.IO",
                "MyRegistry",
                "[::1]",
                "[fc00::1]",
                "[2001:DB8::]",
            ],
            with_ipv6=True,
        )
    ),
    tags=tags(short_max=15, long_min=100),
    max_components=6,
    bare_names=False,  # short and long, tagged, pinned or both
)


@PROPERTY
@given(_references)
def test_generated_references_round_trip(ref: ImageReference) -> None:
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref
    expected = _go_parse_normalized_named(str(ref))
    assert expected == (ref.registry, ref.path, ref.tag, ref.digest)


@PROPERTY
@given(_references, st.sampled_from(["", "index."]))
def test_normalization_is_idempotent(ref: ImageReference, legacy: str) -> None:
    text = str(ref)
    if ref.registry == "docker.io":
        text = legacy + text
    once = parse_reference(text)
    assert parse_reference(str(once)) == once
    assert parse_reference(once.familiar) == once
