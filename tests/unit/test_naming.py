"""Tests for backup naming policies (flat and nested)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import digests, hosts, references, registries, tags

from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    InvalidNamingPolicy,
    NamingPolicy,
    backup_reference,
    decode_flat_tag,
    decode_registry_component,
    encode_registry_component,
    flat_tag,
    is_backup_of,
    is_backup_reference,
    is_hashed_flat_tag,
    pinned_reference,
    versioned_backup_reference,
    versioned_flat_tag,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
)

HEX64 = "0123456789abcdef" * 4
OTHER64 = "f" * 64
SHA256 = f"sha256:{HEX64}"
VALID_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FLAT = NamingPolicy("flat", "backup.example.com/ns/registry")
NESTED = NamingPolicy("nested", "backup.example.com/mirror")
NESTED_ROOT = NamingPolicy("nested", "backup.example.com")
LONG_PATH = "/".join(["component"] * 12)


def source_identity(source: ImageReference) -> ImageReference:
    """What a flat tag must preserve: the tag (default latest), or the digest alone."""
    if source.tag is not None:
        return source.without_digest()
    return source if source.digest is not None else source.with_tag("latest")


# --- Policies ---


@pytest.mark.parametrize(
    ("kind", "target", "registry", "path"),
    [
        ("flat", "backup.example.com/ns/registry", "backup.example.com", "ns/registry"),
        ("flat", "index.docker.io/org/backup", "docker.io", "org/backup"),
        ("flat", "org/backup", "docker.io", "org/backup"),
        ("flat", "localhost:5000/backup", "localhost:5000", "backup"),
        ("nested", "backup.example.com", "backup.example.com", ""),
        ("nested", "backup.example.com/prefix/sub", "backup.example.com", "prefix/sub"),
        ("nested", "localhost:5000", "localhost:5000", ""),
        ("nested", "[::1]:5000/p", "[::1]:5000", "p"),
        ("nested", "index.docker.io/org", "docker.io", "org"),
    ],
)
def test_policy_accepts(kind: str, target: str, registry: str, path: str) -> None:
    policy = NamingPolicy(kind, target)  # type: ignore[arg-type]
    assert (policy.target_registry, policy.target_path) == (registry, path)


@pytest.mark.parametrize(
    ("kind", "target", "reason"),
    [
        ("mirror", "backup.example.com/x", "'flat' or 'nested'"),
        ("flat", None, "must be a string"),
        ("flat", "", "empty"),
        ("flat", "backup.example.com/ns/registry:tag", "without tag or digest"),
        ("flat", "backup.example.com/ns/registry@" + SHA256, "without tag or digest"),
        ("flat", "localhost:5000", "without tag or digest"),
        ("flat", "backup.example.com/Ns/registry", "lowercase"),
        ("flat", "backup example", "whitespace"),
        ("nested", "backup", "registry host"),
        ("nested", "backup/prefix", "registry host"),
        ("nested", "backup.example.com/", "empty"),
        ("nested", "backup.example.com/Prefix", "lowercase"),
        ("nested", "backup.example.com/p:tag", "invalid character"),
        ("nested", "bad_host.io/p", "host label"),
        ("nested", "localhost:x", "invalid port"),
        ("nested", "backup.example.com/" + "a" * 240, "no room"),
    ],
)
def test_policy_rejects(kind: str, target: str, reason: str) -> None:
    with pytest.raises(InvalidNamingPolicy) as info:
        NamingPolicy(kind, target)  # type: ignore[arg-type]
    assert reason in str(info.value)
    if isinstance(target, str) and kind in ("flat", "nested"):
        assert repr(target) in str(info.value)


def test_policy_is_frozen_and_compares_by_kind_and_target() -> None:
    assert NamingPolicy("flat", "a.io/b") == NamingPolicy("flat", "a.io/b")
    with pytest.raises(AttributeError):
        FLAT.target = "other.io/x"  # type: ignore[misc]


# --- Flat scheme ---

FLAT_CASES = [
    ("nginx:1.27", "docker.io_library_nginx_1.27"),
    ("nginx", "docker.io_library_nginx_latest"),
    (
        "quay.io/prometheus/node-exporter:v1.8.2",
        "quay.io_prometheus_node-exporter_v1.8.2",
    ),
    (
        "registry.k8s.io/ingress-nginx/controller:v1.9.4",
        "registry.k8s.io_ingress-nginx_controller_v1.9.4",
    ),
    ("localhost:5000/my_app:dev_1", "localhost__5000_my__app_dev__1"),
    ("localhost/a__b:c", "localhost_a____b_c"),
    ("[::1]:5000/app:1", "__..1__5000_app_1"),
    ("[fe80::]/a:b", "__fe80.._a_b"),
    ("Foo/bar:_x_", "Foo_bar___x__"),
    ("nginx@" + SHA256, "docker.io_library_nginx_.sha256-" + HEX64),
    ("nginx:1.27@" + SHA256, "docker.io_library_nginx_1.27"),
]


@pytest.mark.parametrize(("text", "tag"), FLAT_CASES)
def test_flat_tag_examples(text: str, tag: str) -> None:
    source = parse_reference(text)
    backup = backup_reference(source, FLAT)
    assert backup == ImageReference(
        "backup.example.com", "ns/registry", tag, source.digest
    )
    assert decode_flat_tag(tag) == source_identity(source)


def test_flat_tag_of_bare_name_is_latest() -> None:
    bare = ImageReference("quay.io", "a/b")
    assert flat_tag(bare) == flat_tag(bare.with_tag("latest")) == "quay.io_a_b_latest"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("a.io/b_c:d", "a.io/b/c:d"),
        ("a.io/b/c:x", "a.io/b:c_x"),
        ("localhost:5000/a:b", "localhost/5000/a:b"),
        ("nginx@" + SHA256, "nginx:sha256-" + HEX64),
        ("a.io/b:_c", "a.io/b:c"),
        ("a.io/b:__", "a.io/b:_"),
        ("A.io/b:c", "a.io/b:c"),
        ("[::1]/a:b", "[::1]:5000/a:b"),
    ],
)
def test_flat_tags_of_confusable_sources_differ(left: str, right: str) -> None:
    assert flat_tag(parse_reference(left)) != flat_tag(parse_reference(right))


def test_flat_digest_tag_cannot_equal_a_real_tag() -> None:
    digest_only = flat_tag(parse_reference("nginx@" + SHA256))
    suffix = digest_only.removeprefix("docker.io_library_nginx_")
    # A real tag would have to start with ".", which the grammar forbids.
    assert suffix.startswith(".")
    with pytest.raises(InvalidReference):
        parse_reference("nginx:" + suffix)


def test_flat_hashed_fallback() -> None:
    first = parse_reference(f"registry.example.com/{LONG_PATH}:v1")
    second = parse_reference(f"registry.example.com/{LONG_PATH}:v2")
    tag_one, tag_two = flat_tag(first), flat_tag(second)
    assert len(tag_one) == len(tag_two) == 128
    assert tag_one != tag_two
    assert tag_one.startswith("registry.example.com_component_component")
    assert re.fullmatch(r".{102}-_[0-9a-f]{24}", tag_one)
    assert is_hashed_flat_tag(tag_one)
    assert VALID_TAG.fullmatch(tag_one)
    with pytest.raises(InvalidReference, match="hash"):
        decode_flat_tag(tag_one)


def test_flat_hashed_digest_only_source() -> None:
    source = parse_reference(f"registry.example.com/{LONG_PATH}@sha512:{HEX64 * 2}")
    tag = flat_tag(source)
    assert is_hashed_flat_tag(tag) and len(tag) == 128
    assert backup_reference(source, FLAT).digest == source.digest


def test_flat_hash_ignores_the_digest_of_a_tagged_source() -> None:
    tagged = parse_reference(f"registry.example.com/{LONG_PATH}:v1")
    assert flat_tag(tagged) == flat_tag(tagged.with_digest(SHA256))


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "nginx",
        "a_b",
        "docker.io_nginx_1",  # Docker Hub paths need library/
        "x_a_b",  # "x" is not a registry
        "quay.io_a_.sha256-abc",
        "quay.io_a_.md5-" + HEX64,
        "quay.io_a_.sha256" + HEX64,
        "__zz_a_b",
        "quay.io__x_a_b",
        "quay.io_A_b",
        "quay.io_a_b_",
        "quay.io_a_-b",
        "quay.io_a_b-_c",
        "quay.io__a_b",
    ],
)
def test_decode_flat_tag_rejects(tag: str) -> None:
    with pytest.raises(InvalidReference) as info:
        decode_flat_tag(tag)
    assert repr(tag) in str(info.value)


def test_decode_flat_tag_type_error() -> None:
    with pytest.raises(TypeError):
        decode_flat_tag(3)  # type: ignore[arg-type]


# --- Nested scheme ---

NESTED_CASES = [
    ("nginx:1.27", "backup.example.com/mirror/docker.io/library/nginx:1.27"),
    ("localhost:5000/app:1", "backup.example.com/mirror/localhost_5000/app:1"),
    ("127.0.0.1:5001/x:y", "backup.example.com/mirror/127.0.0.1_5001/x:y"),
    ("[::1]:5000/app:1", "backup.example.com/mirror/hex__5b3a3a315d_5000/app:1"),
    ("Quay.io/a/b:1", "backup.example.com/mirror/hex__517561792e696f/a/b:1"),
    ("quay.io/a/b:1@" + SHA256, f"backup.example.com/mirror/quay.io/a/b:1@{SHA256}"),
    (
        "nginx@" + SHA256,
        f"backup.example.com/mirror/docker.io/library/nginx:sha256_{HEX64}@{SHA256}",
    ),
]


@pytest.mark.parametrize(("text", "expected"), NESTED_CASES)
def test_nested_examples(text: str, expected: str) -> None:
    backup = backup_reference(parse_reference(text), NESTED)
    assert str(backup) == expected
    assert parse_reference(expected) == backup


def test_nested_without_prefix() -> None:
    backup = backup_reference(parse_reference("quay.io/a/b:1"), NESTED_ROOT)
    assert str(backup) == "backup.example.com/quay.io/a/b:1"


def test_nested_digest_tag_of_sha512_fits() -> None:
    source = parse_reference(f"quay.io/a@sha512:{HEX64 * 2}")
    backup = backup_reference(source, NESTED)
    assert backup.tag is not None and len(backup.tag) == 128
    assert backup.tag.startswith("sha512_")
    assert backup.digest == source.digest


def test_nested_too_long_names_the_source() -> None:
    source = parse_reference("registry.example.com/" + "/".join(["a" * 50] * 4) + ":1")
    policy = NamingPolicy("nested", "backup.example.com/" + "p" * 30)
    with pytest.raises(InvalidReference) as info:
        backup_reference(source, policy)
    assert info.value.reference == str(source)
    assert "more than 255" in str(info.value)


@pytest.mark.parametrize(
    ("registry", "component"),
    [
        ("docker.io", "docker.io"),
        ("localhost", "localhost"),
        ("localhost:5000", "localhost_5000"),
        ("127.0.0.1:5001", "127.0.0.1_5001"),
        ("xn--bcher-kva.example:443", "xn--bcher-kva.example_443"),
        ("[::1]:5000", "hex__5b3a3a315d_5000"),
        ("[fc00::1]", "hex__5b666330303a3a315d"),
        ("A", "hex__41"),
        ("Quay.io:12", "hex__517561792e696f_12"),
    ],
)
def test_registry_component(registry: str, component: str) -> None:
    assert encode_registry_component(registry) == component
    assert PATH_COMPONENT.fullmatch(component)
    assert decode_registry_component(component) == registry


@pytest.mark.parametrize(
    "component",
    [
        "",
        "hex__",
        "hex__zz",
        "hex__6162",
        "docker.io_",
        "docker.io_x",
        "a_b_1",
        "Hex",
        "a__1",
    ],
)
def test_decode_registry_component_rejects(component: str) -> None:
    with pytest.raises(InvalidReference):
        decode_registry_component(component)


def test_encode_registry_component_rejects_invalid_registry() -> None:
    with pytest.raises(InvalidReference, match="invalid port"):
        encode_registry_component("localhost:x")


# --- Backup detection, idempotence, pinning ---


@pytest.mark.parametrize(
    ("policy", "text", "expected"),
    [
        (FLAT, "backup.example.com/ns/registry:docker.io_library_nginx_1", True),
        (FLAT, "BACKUP.example.com/ns/registry:x", True),
        (FLAT, "backup.example.com/ns/other:x", False),
        (FLAT, "backup.example.com/ns/registry/sub:x", False),
        (FLAT, "other.example.com/ns/registry:x", False),
        (NESTED, "backup.example.com/mirror/docker.io/library/nginx:1", True),
        (NESTED, "backup.example.com/mirror:1", True),
        (NESTED, "backup.example.com/mirrors/x:1", False),
        (NESTED, "backup.example.com/team/app:1", False),
        (NESTED, "quay.io/mirror/x:1", False),
        (NESTED_ROOT, "backup.example.com/team/app:1", True),
        (NESTED_ROOT, "backup.example.com:443/team/app:1", False),
    ],
)
def test_is_backup_reference(policy: NamingPolicy, text: str, expected: bool) -> None:
    ref = parse_reference(text)
    assert is_backup_reference(ref, policy) is expected
    if expected:
        assert backup_reference(ref, policy) is ref


def test_pinned_reference() -> None:
    backup = backup_reference(parse_reference("nginx:1.27"), FLAT)
    repo_tag = "backup.example.com/ns/registry:docker.io_library_nginx_1.27"
    assert pinned_reference(backup, SHA256) == f"{repo_tag}@{SHA256}"
    assert pinned_reference(backup, HEX64) == f"{repo_tag}@{SHA256}"
    assert pinned_reference(backup, SHA256, pin=False) == repo_tag
    assert pinned_reference(backup, None, pin=False) == repo_tag


def test_pinned_reference_of_pinned_source() -> None:
    backup = backup_reference(parse_reference("nginx:1.27@" + SHA256), NESTED)
    expected = f"backup.example.com/mirror/docker.io/library/nginx:1.27@{SHA256}"
    assert pinned_reference(backup, None) == expected
    assert pinned_reference(backup, SHA256) == expected
    with pytest.raises(ValueError, match="pinned to"):
        pinned_reference(backup, f"sha256:{OTHER64}")


@pytest.mark.parametrize(
    ("backup", "digest", "match"),
    [
        (ImageReference("b.io", "x", "t"), None, "no digest"),
        (ImageReference("b.io", "x", None, SHA256), SHA256, "no tag"),
        (ImageReference("b.io", "x", "t"), "sha256:abc", "invalid digest"),
        (ImageReference("b.io", "x", "t"), "abc", "invalid digest"),
    ],
)
def test_pinned_reference_errors(
    backup: ImageReference, digest: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        pinned_reference(backup, digest)


# --- Properties ---

_registries = registries(
    hosts(
        [
            "docker.io",
            "quay.io",
            "localhost",
            "127.0.0.1",
            "Quay.IO",
            "Reg",
            "[::1]",
            "[fe80::]",
            "[2001:DB8::1]",
        ],
        with_ipv6=False,
    )
)
# Tagged, digest-only, both, or bare names.
_references = references(
    registries=_registries,
    tags=tags(short_max=12, long_min=90),
    max_components=8,
    bare_names=True,
)


# Few distinct building blocks, so that generated pairs often look alike.
confusable = references(
    registries=st.sampled_from(
        [
            "a.io",
            "a.io:5",
            "a.io:55",
            "localhost",
            "localhost:5",
            "[::1]",
            "[::1]:5",
            "A.io",
        ]
    ),
    components=st.sampled_from(["a", "b", "5", "a_b", "a__b", "a.b", "a-b", "sha256"]),
    tags=st.sampled_from(
        ["a", "b", "5", "_", "__", "_a", "a_", "a__b", "a_b", "sha256-" + HEX64]
    ),
    digests=st.sampled_from([SHA256, f"sha256:{OTHER64}"]),
    max_components=3,
    bare_names=True,
)
any_reference = st.one_of(_references, confusable)


@PROPERTY
@given(any_reference)
def test_flat_tag_is_valid_and_decodes_to_its_source(source: ImageReference) -> None:
    tag = flat_tag(source)
    assert len(tag) <= 128 and VALID_TAG.fullmatch(tag)
    if is_hashed_flat_tag(tag):
        assert len(tag) == 128
    else:
        assert decode_flat_tag(tag) == source_identity(source)


@PROPERTY
@given(any_reference, any_reference)
def test_flat_tags_of_distinct_sources_differ(
    left: ImageReference, right: ImageReference
) -> None:
    if source_identity(left) != source_identity(right):
        assert flat_tag(left) != flat_tag(right)
    else:
        assert flat_tag(left) == flat_tag(right)


@PROPERTY
@given(confusable, confusable)
def test_nested_names_of_distinct_sources_differ(
    left: ImageReference, right: ImageReference
) -> None:
    left_backup, right_backup = backup_reference(left, NESTED), backup_reference(
        right, NESTED
    )
    if (left.registry, left.path) != (right.registry, right.path):
        assert left_backup.repository != right_backup.repository
    if source_identity(left) != source_identity(right):
        assert left_backup.without_digest() != right_backup.without_digest()


@PROPERTY
@given(any_reference, st.sampled_from([FLAT, NESTED, NESTED_ROOT]))
def test_backup_references_parse_round_trip_and_are_idempotent(
    source: ImageReference, policy: NamingPolicy
) -> None:
    try:
        backup = backup_reference(source, policy)
    except InvalidReference as error:
        assert policy.kind == "nested" and error.reference == str(source)
        return
    assert backup.tag is not None and VALID_TAG.fullmatch(backup.tag)
    assert backup.digest == source.digest
    assert parse_reference(str(backup)) == backup
    assert is_backup_reference(backup, policy)
    assert backup_reference(backup, policy) == backup
    pinned = pinned_reference(backup, source.digest or SHA256)
    assert parse_reference(pinned) == backup.with_digest(source.digest or SHA256)


@PROPERTY
@given(_registries, _registries)
def test_registry_component_is_injective_and_valid(left: str, right: str) -> None:
    component = encode_registry_component(left)
    assert PATH_COMPONENT.fullmatch(component)
    assert decode_registry_component(component) == left
    assert (component == encode_registry_component(right)) == (left == right)


@PROPERTY
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="_.-aA1:", max_size=30),
        any_reference.map(flat_tag).flatmap(
            lambda tag: st.sampled_from(
                [tag, tag[:-1], tag + "_", "_" + tag, tag.upper()]
            )
        ),
    )
)
def test_decoders_raise_only_invalid_reference(text: str) -> None:
    for decode in (decode_flat_tag, decode_registry_component):
        try:
            decode(text)
        except InvalidReference as error:
            assert error.reference == text


# --- Versioned backups (the plain backup tag already holds other content) ---

SHA512 = f"sha512:{HEX64 * 2}"
VERSIONED_HASHED = re.compile(r".{101}-_\.[0-9a-f]{24}")


def versioned_identity(source: ImageReference, digest: str) -> ImageReference:
    """What a versioned name must preserve: tag (default latest) and digest, or the digest alone."""
    if source.tag is None and source.digest is not None:
        return source
    return source.with_tag(source.tag or "latest").with_digest(digest)


VERSIONED_FLAT_CASES = [
    ("nginx:1.27", SHA256, f"docker.io_library_nginx_.sha256-{HEX64}_1.27"),
    ("nginx", SHA256, f"docker.io_library_nginx_.sha256-{HEX64}_latest"),
    ("nginx:1.27@" + SHA256, SHA256, f"docker.io_library_nginx_.sha256-{HEX64}_1.27"),
    ("localhost:5000/my_app:dev_", SHA256, f"localhost__5000_my__app_.sha256-{HEX64}_dev__"),
    ("quay.io/a/b:_x", SHA256, f"quay.io_a_b_.sha256-{HEX64}___x"),
    ("[::1]/a:v-", SHA256, f"__..1_a_.sha256-{HEX64}_v-"),
    # Digest-only sources keep their (already digest-specific) plain tag.
    ("nginx@" + SHA256, SHA256, f"docker.io_library_nginx_.sha256-{HEX64}"),
]


@pytest.mark.parametrize(("text", "digest", "tag"), VERSIONED_FLAT_CASES)
def test_versioned_flat_examples(text: str, digest: str, tag: str) -> None:
    source = parse_reference(text)
    backup = versioned_backup_reference(source, digest, FLAT)
    assert backup == ImageReference("backup.example.com", "ns/registry", tag, digest)
    assert versioned_flat_tag(source, digest) == tag
    assert decode_flat_tag(tag) == versioned_identity(source, digest)
    assert parse_reference(str(backup)) == backup
    assert is_backup_reference(backup, FLAT)
    if source.tag is not None:
        assert tag != flat_tag(source)


VERSIONED_NESTED_CASES = [
    ("nginx:1.27", SHA256, f"docker.io/library/nginx:1.27_.sha256-{HEX64}"),
    ("nginx", SHA256, f"docker.io/library/nginx:latest_.sha256-{HEX64}"),
    ("localhost:5000/app:dev_", SHA256, f"localhost_5000/app:dev__.sha256-{HEX64}"),
    ("[::1]:5000/app:1", SHA256, f"hex__5b3a3a315d_5000/app:1_.sha256-{HEX64}"),
    ("nginx@" + SHA256, SHA256, f"docker.io/library/nginx:sha256_{HEX64}"),
]


@pytest.mark.parametrize(("text", "digest", "expected"), VERSIONED_NESTED_CASES)
def test_versioned_nested_examples(text: str, digest: str, expected: str) -> None:
    backup = versioned_backup_reference(parse_reference(text), digest, NESTED)
    full = f"backup.example.com/mirror/{expected}@{digest}"
    assert str(backup) == full
    assert parse_reference(full) == backup
    assert is_backup_reference(backup, NESTED)


def test_rebuilt_tag_gets_a_new_name_and_the_old_one_stays() -> None:
    """The scenario: nginx:1.27 was backed up at X, upstream rebuilt it as Y."""
    source = parse_reference("nginx:1.27")
    x_digest, y_digest = SHA256, f"sha256:{OTHER64}"
    for policy in (FLAT, NESTED, NESTED_ROOT):
        plain = backup_reference(source, policy)
        at_x = versioned_backup_reference(source, x_digest, policy)
        at_y = versioned_backup_reference(source, y_digest, policy)
        tags = {plain.tag, at_x.tag, at_y.tag}
        assert len(tags) == 3
        assert at_y.repository == plain.repository
        assert at_y.digest == y_digest


def test_versioned_flat_hashed_fallback() -> None:
    source = parse_reference(f"registry.example.com/{LONG_PATH}:v1")
    tag = versioned_backup_reference(source, SHA256, FLAT).tag
    other = versioned_backup_reference(source, f"sha256:{OTHER64}", FLAT).tag
    assert tag is not None and other is not None
    assert VERSIONED_HASHED.fullmatch(tag) and VERSIONED_HASHED.fullmatch(other)
    assert tag != other != flat_tag(source)
    assert tag.startswith("registry.example.com_component_component")
    assert is_hashed_flat_tag(tag) and VALID_TAG.fullmatch(tag)
    # Plain hashed tags have "_" where versioned ones have "." (index 103).
    assert flat_tag(source)[103] == "_" and tag[103] == "."
    with pytest.raises(InvalidReference, match="hash"):
        decode_flat_tag(tag)


def test_versioned_sha512_is_always_hashed() -> None:
    source = parse_reference("quay.io/a:b")
    flat = versioned_backup_reference(source, SHA512, FLAT)
    nested = versioned_backup_reference(source, SHA512, NESTED)
    assert flat.tag is not None and VERSIONED_HASHED.fullmatch(flat.tag)
    assert flat.tag.startswith("quay.io_a_.sha512-")
    assert nested.tag is not None and VERSIONED_HASHED.fullmatch(nested.tag)
    assert nested.tag.startswith("b_.sha512-")
    assert flat.digest == nested.digest == SHA512


def test_versioned_nested_long_tag_is_hashed() -> None:
    tag = "t" * 60
    backup = versioned_backup_reference(parse_reference(f"quay.io/a:{tag}"), SHA256, NESTED)
    assert backup.tag is not None and VERSIONED_HASHED.fullmatch(backup.tag)
    assert backup.tag.startswith(tag + "_.sha256-")


def test_versioned_accepts_a_bare_sha256() -> None:
    source = parse_reference("nginx:1.27")
    assert versioned_backup_reference(source, HEX64, FLAT) == versioned_backup_reference(
        source, SHA256, FLAT
    )


@pytest.mark.parametrize(
    ("text", "digest", "match"),
    [
        ("nginx:1.27", "sha256:abc", "invalid digest"),
        ("nginx:1.27", "md5:" + HEX64, "invalid digest"),
        ("nginx:1.27@" + SHA256, f"sha256:{OTHER64}", "pinned to"),
        ("nginx@" + SHA256, f"sha256:{OTHER64}", "pinned to"),
    ],
)
def test_versioned_rejects_bad_or_contradicting_digests(
    text: str, digest: str, match: str
) -> None:
    for policy in (FLAT, NESTED):
        with pytest.raises(ValueError, match=match):
            versioned_backup_reference(parse_reference(text), digest, policy)
    with pytest.raises(ValueError, match=match):
        versioned_flat_tag(parse_reference(text), digest)


def test_versioned_nested_too_long_names_the_source() -> None:
    source = parse_reference("registry.example.com/" + "/".join(["a" * 50] * 4))
    policy = NamingPolicy("nested", "backup.example.com/" + "p" * 30)
    with pytest.raises(InvalidReference) as info:
        versioned_backup_reference(source, SHA256, policy)
    assert info.value.reference == str(source)


@pytest.mark.parametrize("policy", [FLAT, NESTED, NESTED_ROOT])
def test_versioned_backup_reference_is_idempotent(policy: NamingPolicy) -> None:
    backup = versioned_backup_reference(parse_reference("nginx:1.27"), SHA256, policy)
    assert versioned_backup_reference(backup, SHA256, policy) == backup
    assert backup_reference(backup, policy) is backup
    bare = backup.without_digest()
    assert versioned_backup_reference(bare, SHA256, policy) == backup


def test_decode_versioned_flat_tag() -> None:
    assert decode_flat_tag(f"quay.io_a_.sha256-{HEX64}_b") == ImageReference(
        "quay.io", "a", "b", SHA256
    )
    assert decode_flat_tag(f"quay.io_a_.sha256-{HEX64}___b") == ImageReference(
        "quay.io", "a", "_b", SHA256
    )


@pytest.mark.parametrize(
    "tag",
    [
        f"quay.io_.sha256-{HEX64}_b",  # no path component
        f"quay.io_a_.sha256-{HEX64}_.b",  # tag starts with "."
        f"quay.io_a_.sha256-{HEX64}_-b",  # tag starts with "-"
        f"quay.io_a_.sha256-{HEX64}_b_c",  # digest field inside the path
        f"quay.io_a_.sha256-{HEX64[:-1]}_b",  # short digest
        f"quay.io_a_.sha384-{HEX64}_b",  # wrong length for the algorithm
        f"quay.io_a_.sha256{HEX64}_b",  # no dash
        f"quay.io_a_.sha256-{HEX64}_",  # empty tag
        f"quay.io_a_.sha256-{HEX64}_.sha256-{HEX64}",  # two digest fields
        f"quay.io_a_..sha256-{HEX64}_b",
    ],
)
def test_decode_flat_tag_rejects_bad_versioned_tags(tag: str) -> None:
    with pytest.raises(InvalidReference) as info:
        decode_flat_tag(tag)
    assert info.value.reference == tag


def test_versioned_nested_caveat_verbatim_tags() -> None:
    """Documented: nested keeps tags verbatim, so a real tag spelled like a versioned one coincides."""
    versioned = versioned_backup_reference(parse_reference("quay.io/a:b"), SHA256, NESTED)
    lookalike = backup_reference(parse_reference(f"quay.io/a:b_.sha256-{HEX64}"), NESTED)
    assert versioned.without_digest() == lookalike.without_digest()
    # The flat scheme has no such caveat.
    assert versioned_flat_tag(parse_reference("quay.io/a:b"), SHA256) != flat_tag(
        parse_reference(f"quay.io/a:b_.sha256-{HEX64}")
    )


# Tags chosen to look like pieces of versioned tags.
_versioned_confusable = references(
    registries=st.sampled_from(["a.io", "a.io:5", "localhost", "[::1]", "A.io"]),
    components=st.sampled_from(["a", "b", "a_b", "a__b", "sha256", "a-b"]),
    tags=st.sampled_from(
        [
            "a",
            "b",
            "_",
            "a_",
            "a-",
            "_a",
            "latest",
            f"_.sha256-{HEX64}",
            f"a_.sha256-{HEX64}",
            f"sha256-{HEX64}_a",
            f"sha256_{HEX64}",
            f"a-_.{HEX64[:24]}",
        ]
    ),
    digests=st.sampled_from([SHA256, f"sha256:{OTHER64}"]),
    max_components=3,
    bare_names=True,
)
_any_versioned_source = st.one_of(any_reference, _versioned_confusable)
_version_digests = st.one_of(
    st.sampled_from([SHA256, f"sha256:{OTHER64}"]), digests
)


@st.composite
def versioned_pairs(draw: st.DrawFn) -> tuple[ImageReference, str]:
    """(source, digest) with a digest consistent with the source's own one."""
    source = draw(_any_versioned_source)
    digest = draw(_version_digests)
    return source, source.digest or digest


@PROPERTY
@given(versioned_pairs(), st.sampled_from([FLAT, NESTED, NESTED_ROOT]))
def test_versioned_references_are_valid_and_round_trip(
    pair: tuple[ImageReference, str], policy: NamingPolicy
) -> None:
    source, digest = pair
    try:
        backup = versioned_backup_reference(source, digest, policy)
    except InvalidReference as error:
        assert policy.kind == "nested" and error.reference == str(source)
        return
    assert backup.tag is not None and VALID_TAG.fullmatch(backup.tag)
    assert backup.digest == digest
    assert parse_reference(str(backup)) == backup
    assert is_backup_reference(backup, policy)
    assert versioned_backup_reference(backup, digest, policy) == backup
    plain = backup_reference(source, policy)
    assert backup.repository == plain.repository
    if source.tag is None and source.digest is not None:
        assert backup == plain
    else:
        # Never the plain tag of its own source: that tag is never moved.
        assert backup.tag != plain.tag
    if policy.kind == "flat":
        tag = backup.tag
        assert tag == versioned_flat_tag(source, digest)
        if is_hashed_flat_tag(tag):
            assert len(tag) == 128
        else:
            assert decode_flat_tag(tag) == versioned_identity(source, digest)


@PROPERTY
@given(versioned_pairs(), versioned_pairs())
def test_versioned_flat_tags_are_injective(
    left: tuple[ImageReference, str], right: tuple[ImageReference, str]
) -> None:
    left_tag, right_tag = versioned_flat_tag(*left), versioned_flat_tag(*right)
    same = versioned_identity(*left) == versioned_identity(*right)
    assert (left_tag == right_tag) == same


def plain_readings(tag: str) -> list[ImageReference]:
    """Every source whose *plain* readable flat tag could be ``tag``.

    An independent reading of the plain grammar (split at the first ``_`` of
    odd runs; last field a tag or a ``.`` digest field): if a plain source's
    readable flat tag equals ``tag``, it is among these.
    """
    fields, start = [], 0
    for run in re.finditer(r"_+", tag):
        if len(run.group()) % 2:
            fields.append(tag[start : run.start()])
            start = run.start() + 1
    fields.append(tag[start:])
    if len(fields) < 3:
        return []
    host, _, port = fields[0].removeprefix("__").partition("__")
    if fields[0].startswith("__"):
        host = "[" + host.replace(".", ":") + "]"
    registry = f"{host}:{port}" if port else host
    path = "/".join(field.replace("__", "_") for field in fields[1:-1])
    last = fields[-1]
    candidates = [(last.replace("__", "_"), None)]
    if last.startswith("."):
        algorithm, _, encoded = last[1:].partition("-")
        candidates.append((None, f"{algorithm}:{encoded}"))
    readings = []
    for candidate_tag, candidate_digest in candidates:
        try:
            readings.append(ImageReference(registry, path, candidate_tag, candidate_digest))
        except (InvalidReference, ValueError):
            pass
    return readings


@PROPERTY
@given(versioned_pairs(), _any_versioned_source)
def test_versioned_flat_tags_never_equal_plain_flat_tags(
    pair: tuple[ImageReference, str], other: ImageReference
) -> None:
    source, digest = pair
    assume(not (source.tag is None and source.digest is not None))
    versioned = versioned_flat_tag(source, digest)
    plain = flat_tag(other)
    assert versioned != plain
    # Directed: no plain source at all spells the versioned tag.
    for reading in plain_readings(versioned):
        assert flat_tag(reading) != versioned
    # The oracle itself is complete: it recovers the source of a readable plain tag.
    if not is_hashed_flat_tag(plain):
        assert source_identity(other) in plain_readings(plain)
    # Hashed forms are told apart by shape, not only by their hashes.
    assert versioned[103:104] != "_" or not is_hashed_flat_tag(versioned)
    assert plain[103:104] != "." or not is_hashed_flat_tag(plain)


@PROPERTY
@given(versioned_pairs(), versioned_pairs())
def test_versioned_nested_names_are_injective(
    left: tuple[ImageReference, str], right: tuple[ImageReference, str]
) -> None:
    try:
        left_backup = versioned_backup_reference(*left, NESTED)
        right_backup = versioned_backup_reference(*right, NESTED)
    except InvalidReference:
        return
    same = versioned_identity(*left) == versioned_identity(*right)
    assert (left_backup == right_backup) == same


@PROPERTY
@given(versioned_pairs(), _versioned_confusable)
def test_versioned_nested_tags_avoid_generated_nested_tags(
    pair: tuple[ImageReference, str], other: ImageReference
) -> None:
    """Only a source tag that already uses the versioned spelling may coincide."""
    source, digest = pair
    assume(not (source.tag is None and source.digest is not None))
    try:
        versioned = versioned_backup_reference(source, digest, NESTED)
        plain = backup_reference(other, NESTED)
    except InvalidReference:
        return
    if versioned.repository != plain.repository:
        return
    assert versioned.tag != "latest"
    assert not re.fullmatch(r"sha(256|384|512)_[0-9a-f]+", str(versioned.tag))
    if versioned.tag == plain.tag:
        assert other.tag == versioned.tag  # the documented verbatim-tag caveat
        assert "_.sha256-" in other.tag or "-_." in other.tag


@PROPERTY
@given(versioned_pairs(), any_reference, st.sampled_from([FLAT, NESTED, NESTED_ROOT]))
def test_a_backup_is_recognised_as_a_backup_of_its_source_under_any_policy(
    pair: tuple[ImageReference, str], other: ImageReference, policy: NamingPolicy
) -> None:
    source, digest = pair
    try:
        plain = backup_reference(source, policy)
        versioned = versioned_backup_reference(source, digest, policy)
    except InvalidReference:
        return
    assume(not is_backup_reference(source, policy))
    assert is_backup_of(plain.with_digest(digest), source)
    assert is_backup_of(versioned, source)
    if (other.registry, other.path, other.tag) != (source.registry, source.path, source.tag):
        assert not is_backup_of(plain.with_digest(digest), other.with_digest(None))


def test_a_source_is_not_a_backup_of_another_source() -> None:
    assert not is_backup_of(parse_reference("nginx:1.28"), parse_reference("nginx:1.27"))
    assert not is_backup_of(parse_reference("nginx:1.27"), parse_reference("nginx:1.27"))
