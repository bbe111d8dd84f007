"""Names of backup images: where a source image is copied to.

Two policies, chosen per target (``NamingPolicy``):

``flat``: everything goes into ONE pre-created repository (``target``, e.g.
``backup.example.com/ns/registry``); the source registry, path and tag are
encoded into the backup *tag*::

    docker.io/library/nginx:1.27          -> docker.io_library_nginx_1.27
    quay.io/prometheus/node-exporter:v1.8 -> quay.io_prometheus_node-exporter_v1.8
    localhost:5000/my_app:dev_1           -> localhost__5000_my__app_dev__1
    [::1]:5000/app:1                      -> __..1__5000_app_1
    docker.io/library/nginx@sha256:4f3a.. -> docker.io_library_nginx_.sha256-4f3a..
    <anything longer than 128 chars>      -> <first 102 chars>-_<24 hex of sha256>

Readable form: registry, each path component and the tag are joined with a
single ``_``; a literal ``_`` is doubled. Registries hold no ``_``, so
inside the registry field ``__`` stands for the port ``:``, and a leading
``__`` marks an IPv6 literal whose colons are written as dots. Decoding
reads runs of ``_``: path components and registries start and end with an
alphanumeric (or, for IPv6, a dot), so an odd run is one separator plus
doubled literals belonging to the following field (only a tag can start
with ``_``), and an even run is only doubled literals. ``decode_flat_tag``
is the inverse and ``flat_tag(decode_flat_tag(t)) == t`` is checked.

Markers that no readable tag can contain:

* digest-only sources end in ``_.<algorithm>-<hex>``: a single ``_``
  followed by ``.`` would need a real tag starting with ``.``, which the
  grammar forbids, so it never collides with a real tag of the same repo;
* hashed tags contain ``-_`` followed by a non-``_``: in readable tags a
  separator always follows an alphanumeric or a dot, so any ``_`` run after
  ``-`` is doubled literals, i.e. even, i.e. ``-__``. A hashed tag is the
  first 102 readable characters, ``-_``, then 24 hex characters of the
  sha256 of the source (``registry/path:tag`` or ``registry/path@digest``).

The tag encodes registry, path and tag only: ``nginx:1.27`` and
``nginx:1.27@sha256:..`` share a backup tag, and the pinned source keeps its
digest on the backup reference. Callers that copy by digest must therefore
never move an existing backup tag to another digest: workloads rewritten to
``<backup>:<tag>@<old digest>`` would then point at an untagged manifest
that garbage collection may delete. When the plain backup tag already holds
other content (the upstream tag was rebuilt), the new content goes to the
*versioned* backup reference (``versioned_backup_reference``), which also
encodes the digest.

Versioned flat tags put the digest field of a digest-only tag between the
path and the tag::

    docker.io/library/nginx:1.27 at sha256:4f3a..
        -> docker.io_library_nginx_.sha256-4f3a.._1.27
    <anything longer than 128 chars> -> <first 101 chars>-_.<24 hex of sha256>

The digest field ends in a hex digit, so the runs of ``_`` split the fields
exactly as above. The second-to-last field starts with ``.``, which no path
component can, and the last one is the tag, which cannot start with ``.``:
a versioned tag is never a plain tagged or digest-only tag (and never the
plain tag of its own source, so the plain tag is never moved). It never
contains ``-_`` followed by a non-``_`` either. ``decode_flat_tag`` returns
the source with tag *and* digest. With a sha256 digest the readable form
fits when the encoded registry, path and tag take at most 54 characters;
longer ones (and every sha512) are hashed: the first 101 readable
characters, the marker ``-_.``, then 24 hex characters of the sha256 of
``versioned:<registry>/<path>:<tag>@<digest>``. Both hashed forms are 128
characters long and differ at index 103 (``_`` in plain hashed tags, ``.``
in versioned ones), so they never meet, whatever the hashes. A digest-only
source already has a digest-specific tag and keeps it.

``nested``: ``target`` is a registry plus optional prefix; the backup is
``<target>/<registry component>/<source path>:<source tag>``. The registry
becomes one path component, injectively:

* lowercase host: unchanged, ``docker.io``, ``127.0.0.1``;
* port: ``_<port>``: ``localhost:5000`` -> ``localhost_5000``;
* IPv6 literal or uppercase host (rare): ``hex__`` + hex of the host bytes
  (+ ``_<port>``): ``[::1]:5000`` -> ``hex__5b3a3a315d_5000``.

Lowercase hosts never contain ``_``, so the common forms never contain ``__``
and cannot meet the ``hex__`` form. The source tag is kept verbatim, so a
digest-only source gets ``<algorithm>_<hex>`` (cut to 128 characters):
deliberately not the OCI referrers fallback tag ``<algorithm>-<hex>``, but,
unlike the flat marker, a spelling a real tag could in theory also use.
Names longer than 255 characters are refused with ``InvalidReference``
naming the source.

A versioned nested backup keeps the repository and appends the marker
``_.`` and ``<algorithm>-<hex>`` to the tag::

    docker.io/library/nginx:1.27 at sha256:4f3a..
        -> <target>/docker.io/library/nginx:1.27_.sha256-4f3a..

Past 128 characters (with sha256: source tags over 55 characters; every
sha512) it is hashed like the flat form: the first 101 characters, ``-_.``
and the same 24 hex characters. The suffix is anchored at the end (the hex
has a fixed length per algorithm and holds no ``-``), so (tag, digest) is
recovered from it; a readable form ends in at least 64 hex digits where a
hashed one has its ``.``, and the ``.`` keeps both apart from the
digest-only ``<algorithm>_<hex>`` tags and from ``latest``. The result
differs from the plain tag of its own source (the never-move rule) unless
that tag already uses the versioned spelling. As nested keeps source tags
verbatim, a source whose real tag is already spelled
``<tag>_.<algorithm>-<hex>`` (or ends in ``-_.`` + 24 hex) would share the
name; no real tag is known to use ``_.`` followed by a digest, but unlike
the flat form this is a convention, not a guarantee.

Backup references are never renamed twice: ``backup_reference`` and
``versioned_backup_reference`` return a reference that
``is_backup_reference`` recognises unchanged, which makes them idempotent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    LEGACY_DEFAULT_REGISTRY,
    NAME_LENGTH_MAX,
    TAG_LENGTH_MAX,
    ImageReference,
    InvalidReference,
    digest_problem,
    is_domain_like,
    parse_reference,
    path_problem,
    registry_problem,
)

NamingKind = Literal["flat", "nested"]
FLAT: Final = "flat"
NESTED: Final = "nested"

HASH_MARKER: Final = "-_"
HASH_HEX_LENGTH: Final = 24
VERSIONED_HASH_MARKER: Final = "-_."
VERSIONED_MARKER: Final = "_."
_VERSIONED_HASH_INPUT: Final = "versioned:"
_FLAT_DIGEST_MARKER: Final = "."
_FLAT_PORT: Final = "__"
_FLAT_IPV6: Final = "__"
_NESTED_PORT: Final = "_"
_NESTED_HEX: Final = "hex__"

_HASHED_TAG: Final = re.compile(r"-_(?!_)")
_UNDERSCORE_RUN: Final = re.compile(r"_+")
_LOWER_HOST: Final = re.compile(r"[a-z0-9.-]+")
_LOWER_HEX: Final = re.compile(r"(?:[0-9a-f]{2})+")


class InvalidNamingPolicy(ValueError):
    """A naming policy whose kind or target cannot produce valid backup names."""


@dataclass(frozen=True)
class NamingPolicy:
    """Where backups go: ``kind`` is ``"flat"`` or ``"nested"``.

    ``target`` is a repository for flat (``backup.example.com/ns/registry``)
    and a registry with optional path prefix for nested
    (``backup.example.com`` or ``backup.example.com/prefix``). Construction
    raises ``InvalidNamingPolicy`` unless the target is valid for the kind;
    ``target_registry`` and ``target_path`` hold its normalized parts
    (``target_path`` is ``""`` for a nested target without prefix).
    """

    kind: NamingKind
    target: str
    target_registry: str = field(init=False, repr=False, compare=False)
    target_path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in (FLAT, NESTED):
            raise InvalidNamingPolicy(
                f"naming kind must be 'flat' or 'nested', got {self.kind!r}"
            )
        if not isinstance(self.target, str):
            raise InvalidNamingPolicy(
                f"naming target must be a string, got {self.target!r}"
            )
        if self.kind == FLAT:
            registry, path = _flat_target(self.target)
        else:
            registry, path = _nested_target(self.target)
        # Frozen dataclass: derived fields are set once, here.
        object.__setattr__(self, "target_registry", registry)
        object.__setattr__(self, "target_path", path)


def backup_reference(source: ImageReference, policy: NamingPolicy) -> ImageReference:
    """The backup reference for ``source`` under ``policy``.

    Always has a tag, carries ``source.digest`` and parses back to itself.
    A source without tag or digest is treated as ``latest``. A source that
    already is a backup (``is_backup_reference``) is returned unchanged, so
    the function is idempotent. Raises ``InvalidReference`` naming the source
    when a nested name would exceed 255 characters.
    """
    if is_backup_reference(source, policy):
        return source
    if policy.kind == FLAT:
        return ImageReference(
            policy.target_registry, policy.target_path, flat_tag(source), source.digest
        )
    return _nested_backup(source, policy)


def versioned_backup_reference(
    source: ImageReference, digest: str, policy: NamingPolicy
) -> ImageReference:
    """The backup reference for ``source`` at exactly ``digest`` under ``policy``.

    Use it when the plain ``backup_reference`` tag already holds other
    content (the upstream tag was rebuilt): an existing backup tag must never
    be moved. Flat: ``versioned_flat_tag`` in the target repository
    (``docker.io_library_nginx_.sha256-<hex>_1.27``); nested: the plain
    nested repository with tag ``<tag>_.<algorithm>-<hex>`` (see the module
    docstring for both, including the hashed forms past 128 characters).

    ``digest`` is ``algorithm:hex`` (a bare 64-hex string is read as sha256).
    The result always has a tag, carries ``digest``, parses back to itself
    and is recognised by ``is_backup_reference``; it never equals the plain
    ``backup_reference`` of any source (nested: of any source whose tag
    does not itself use the versioned spelling). A source without tag or digest is
    treated as ``latest``. A digest-only source gets its ``backup_reference``,
    which is already digest-specific, and a source that already is a backup
    is returned with ``digest`` (idempotence). Raises ``ValueError`` for an
    invalid digest or one that differs from ``source.digest``, and
    ``InvalidReference`` naming the source when a nested name would exceed
    255 characters.
    """
    identity = _versioned_identity(source, digest)
    if is_backup_reference(source, policy):
        return source.with_digest(identity.digest)
    if identity.tag is None:
        return backup_reference(source, policy)
    if policy.kind == FLAT:
        return ImageReference(
            policy.target_registry,
            policy.target_path,
            _versioned_flat_tag(identity),
            identity.digest,
        )
    plain = _nested_backup(source, policy)  # checks the name length, naming the source
    return plain.with_tag(_versioned_nested_tag(identity)).with_digest(identity.digest)


def is_backup_reference(ref: ImageReference, policy: NamingPolicy) -> bool:
    """Whether ``ref`` lies in the backup space of ``policy``.

    Flat: the target repository itself. Nested: any repository under the
    target prefix (the whole registry when there is no prefix). Registry
    names compare case-insensitively, as host names do.
    """
    if ref.registry.lower() != policy.target_registry.lower():
        return False
    prefix = policy.target_path
    if policy.kind == FLAT:
        return ref.path == prefix
    return not prefix or ref.path == prefix or ref.path.startswith(prefix + "/")


def naming_problem(source: ImageReference, policy: NamingPolicy) -> str | None:
    """Why ``policy`` cannot name a backup of ``source`` (a nested name over 255 characters), or None."""
    try:
        backup_reference(source, policy)
    except InvalidReference as error:
        return error.reason
    return None


def is_backup_of(candidate: ImageReference, original: ImageReference) -> bool:
    """Whether ``candidate`` is a backup of ``original`` under some flat or nested policy.

    The policy is not known (a workload may have been moved from one backup
    target to another), so ``candidate``'s own repository is tried as a flat
    target, and as a nested target each prefix that leaves ``original``'s
    encoded registry and path; the plain and versioned names are compared,
    digests aside.
    """
    wanted = candidate.without_digest()
    for policy in _policies_around(candidate, original):
        if is_backup_reference(original, policy):  # the original itself lies there: it has no backup name
            continue
        try:
            names = {backup_reference(original, policy).without_digest()}
            if candidate.digest is not None and original.digest in (None, candidate.digest):
                names.add(versioned_backup_reference(original, candidate.digest, policy).without_digest())
        except ValueError:  # InvalidReference included: no backup name under this policy
            continue
        if wanted in names:
            return True
    return False


def _policies_around(candidate: ImageReference, original: ImageReference) -> list[NamingPolicy]:
    """The flat and nested policies under which ``candidate`` could be a backup of ``original``."""
    targets = [(FLAT, candidate.repository)]
    try:
        suffix = f"/{encode_registry_component(original.registry)}/{original.path}"
    except InvalidReference:
        suffix = None
    full = f"{candidate.registry}/{candidate.path}"
    if suffix is not None and full.endswith(suffix):
        targets.append((NESTED, full.removesuffix(suffix)))
    policies = []
    for kind, target in targets:
        try:
            policies.append(NamingPolicy(kind, target))  # type: ignore[arg-type]
        except InvalidNamingPolicy:
            continue
    return policies


def pinned_reference(
    backup: ImageReference, digest: str | None, pin: bool = True
) -> str:
    """``<backup repository>:<tag>@<digest>``, or ``<repository>:<tag>`` when ``pin`` is false.

    ``digest`` is the digest observed in the backup (``sha256:<hex>``; a bare
    64-hex string is read as sha256); ``None`` falls back to
    ``backup.digest``. Raises ``ValueError`` when the backup has no tag, when
    pinning has no digest, or when ``digest`` differs from ``backup.digest``
    (the copy did not preserve a pinned source, e.g. a single-platform copy).
    """
    if backup.tag is None:
        raise ValueError(f"backup reference {str(backup)!r} has no tag")
    tagged = backup.without_digest()
    if not pin:
        return str(tagged)
    wanted = _full_digest(digest) if digest is not None else backup.digest
    if wanted is None:
        raise ValueError(f"cannot pin {str(backup)!r}: no digest given")
    if backup.digest is not None and wanted != backup.digest:
        raise ValueError(
            f"backup {str(backup)!r} is pinned to {backup.digest}, but the copy has {wanted}"
        )
    return str(tagged.with_digest(wanted))


def flat_tag(source: ImageReference) -> str:
    """The flat-scheme backup tag for ``source`` (see the module docstring).

    Always a valid tag of at most 128 characters. Injective on
    (registry, path, tag) for tagged sources and (registry, path, digest)
    for digest-only ones; tags longer than 128 characters are replaced by a
    hashed form that no readable tag can equal.
    """
    identity = _flat_identity(source)
    return _fit_tag(_readable_flat_tag(identity), HASH_MARKER, str(identity))


def versioned_flat_tag(source: ImageReference, digest: str) -> str:
    """The versioned flat tag for ``source`` at ``digest`` (see the module docstring).

    Always a valid tag of at most 128 characters, injective on (registry,
    path, tag, digest) and never equal to any ``flat_tag``. A source without
    tag or digest is treated as ``latest``; a digest-only source gets its
    ``flat_tag``. Raises ``ValueError`` like ``versioned_backup_reference``.
    """
    identity = _versioned_identity(source, digest)
    if identity.tag is None:
        return flat_tag(identity)
    return _versioned_flat_tag(identity)


def is_hashed_flat_tag(tag: str) -> bool:
    """Whether ``tag`` is a hashed flat tag, plain or versioned (``decode_flat_tag`` cannot invert it)."""
    return _HASHED_TAG.search(tag) is not None


def decode_flat_tag(tag: str) -> ImageReference:
    """Invert ``flat_tag`` and ``versioned_flat_tag`` for readable (non-hashed) tags.

    Returns the source identity: registry, path and tag (digest ``None``),
    registry, path and digest (tag ``None``) for a digest-only source, or
    registry, path, tag and digest for a versioned tag. Raises
    ``InvalidReference`` naming ``tag`` for hashed tags and for every string
    that neither function produces.
    """
    if not isinstance(tag, str):
        raise TypeError(f"flat tag must be str, got {type(tag).__name__}")
    if is_hashed_flat_tag(tag):
        raise InvalidReference(tag, "hashed flat tags keep only a hash of their source")
    fields = _flat_fields(tag)
    if len(fields) < 3:
        raise InvalidReference(
            tag, "not a flat backup tag (registry_path_tag expected)"
        )
    try:
        source = _flat_source(fields)
    except InvalidReference as error:
        raise InvalidReference(tag, f"not a flat backup tag: {error.reason}") from None
    canonical = (
        _versioned_flat_tag(source)
        if source.tag is not None and source.digest is not None
        else flat_tag(source)
    )
    if canonical != tag:
        raise InvalidReference(tag, "not the canonical flat spelling of any source")
    return source


def encode_registry_component(registry: str) -> str:
    """The nested-scheme path component for ``registry`` (injective, always valid)."""
    problem = registry_problem(registry)
    if problem is not None:
        raise InvalidReference(registry, problem)
    host, port = _split_port(registry)
    port_part = _NESTED_PORT + port if port else ""
    if _LOWER_HOST.fullmatch(host):
        return host + port_part
    return _NESTED_HEX + host.encode("ascii").hex() + port_part


def decode_registry_component(component: str) -> str:
    """Invert ``encode_registry_component``; ``InvalidReference`` for anything it never produces."""
    is_hex = component.startswith(_NESTED_HEX)
    host, separator, port = component.removeprefix(_NESTED_HEX).partition(_NESTED_PORT)
    if is_hex:
        if not _LOWER_HEX.fullmatch(host):
            raise InvalidReference(
                component, "not an encoded registry component (bad hex)"
            )
        host = bytes.fromhex(host).decode("latin-1")
    registry = f"{host}:{port}" if separator else host
    if (
        registry_problem(registry) is not None
        or encode_registry_component(registry) != component
    ):
        raise InvalidReference(component, "not an encoded registry component")
    return registry


def _flat_target(target: str) -> tuple[str, str]:
    try:
        ref = parse_reference(target, default_tag=None)
    except InvalidReference as error:
        raise InvalidNamingPolicy(
            f"flat target {target!r} is not a repository name: {error.reason}"
        ) from None
    if ref.tag is not None or ref.digest is not None:
        raise InvalidNamingPolicy(
            f"flat target {target!r} must name a repository, without tag or digest"
        )
    return ref.registry, ref.path


def _nested_target(target: str) -> tuple[str, str]:
    first, slash, prefix = target.partition("/")
    if not is_domain_like(first):
        raise InvalidNamingPolicy(
            f"nested target {target!r} must start with a registry host "
            "(containing '.' or ':', or 'localhost')"
        )
    registry = DEFAULT_REGISTRY if first == LEGACY_DEFAULT_REGISTRY else first
    problem = registry_problem(registry) or (path_problem(prefix) if slash else None)
    if problem is not None:
        raise InvalidNamingPolicy(f"nested target {target!r}: {problem}")
    # Every backup adds at least "/<registry>/<path>" of four characters or more.
    if len(registry) + 1 + len(prefix) + 4 > NAME_LENGTH_MAX:
        raise InvalidNamingPolicy(
            f"nested target {target!r} leaves no room for image names"
        )
    return registry, prefix


def _nested_backup(source: ImageReference, policy: NamingPolicy) -> ImageReference:
    components = [encode_registry_component(source.registry), source.path]
    if policy.target_path:
        components.insert(0, policy.target_path)
    path = "/".join(components)
    length = len(policy.target_registry) + 1 + len(path)
    if length > NAME_LENGTH_MAX:
        raise InvalidReference(
            str(source),
            f"nested backup name {policy.target_registry}/{path} would be {length} "
            f"characters long, more than {NAME_LENGTH_MAX}",
        )
    tag = source.tag
    if tag is None:
        tag = _nested_digest_tag(source.digest) if source.digest else DEFAULT_TAG
    return ImageReference(policy.target_registry, path, tag, source.digest)


def _nested_digest_tag(digest: str) -> str:
    algorithm, _colon, encoded = digest.partition(":")
    return f"{algorithm}_{encoded}"[:TAG_LENGTH_MAX]


def _versioned_identity(source: ImageReference, digest: str) -> ImageReference:
    """What a versioned name encodes: tag (default ``latest``) and ``digest``.

    A digest-only source stays digest-only. ``ValueError`` for an invalid
    ``digest`` or one that contradicts ``source.digest``.
    """
    if not isinstance(digest, str):
        raise TypeError(f"digest must be str, got {type(digest).__name__}")
    wanted = _full_digest(digest)
    if source.digest is not None and source.digest != wanted:
        raise ValueError(
            f"source {str(source)!r} is pinned to {source.digest}, not {wanted}"
        )
    if source.tag is None and source.digest is not None:
        return source
    return source.with_tag(source.tag or DEFAULT_TAG).with_digest(wanted)


def _versioned_flat_tag(identity: ImageReference) -> str:
    """Versioned flat tag of a reference with both tag and digest."""
    readable = "_".join(
        _flat_path_fields(identity)
        + [_flat_digest_field(str(identity.digest)), _double_underscores(str(identity.tag))]
    )
    return _fit_tag(
        readable, VERSIONED_HASH_MARKER, _VERSIONED_HASH_INPUT + str(identity)
    )


def _versioned_nested_tag(identity: ImageReference) -> str:
    """Versioned nested tag of a reference with both tag and digest."""
    readable = (
        f"{identity.tag}{VERSIONED_MARKER}{_flat_digest_field(str(identity.digest))[1:]}"
    )
    return _fit_tag(
        readable, VERSIONED_HASH_MARKER, _VERSIONED_HASH_INPUT + str(identity)
    )


def _fit_tag(readable: str, marker: str, hash_input: str) -> str:
    """``readable`` if it fits in a tag, else its prefix, ``marker`` and 24 hex of a hash."""
    if len(readable) <= TAG_LENGTH_MAX:
        return readable
    digest = hashlib.sha256(hash_input.encode("ascii")).hexdigest()
    prefix_length = TAG_LENGTH_MAX - len(marker) - HASH_HEX_LENGTH
    return readable[:prefix_length] + marker + digest[:HASH_HEX_LENGTH]


def _flat_identity(source: ImageReference) -> ImageReference:
    """What a flat tag encodes: the tag if any, else the digest, else ``latest``."""
    if source.tag is not None:
        return source.without_digest()
    if source.digest is not None:
        return source
    return source.with_tag(DEFAULT_TAG)


def _readable_flat_tag(identity: ImageReference) -> str:
    fields = _flat_path_fields(identity)
    if identity.tag is not None:
        fields.append(_double_underscores(identity.tag))
    else:
        fields.append(_flat_digest_field(str(identity.digest)))
    return "_".join(fields)


def _flat_path_fields(identity: ImageReference) -> list[str]:
    """The registry field and one field per path component."""
    fields = [_flat_registry(identity.registry)]
    fields.extend(
        _double_underscores(component) for component in identity.path.split("/")
    )
    return fields


def _flat_digest_field(digest: str) -> str:
    algorithm, _colon, encoded = digest.partition(":")
    return f"{_FLAT_DIGEST_MARKER}{algorithm}-{encoded}"


def _flat_registry(registry: str) -> str:
    host, port = _split_port(registry)
    port_part = _FLAT_PORT + port if port else ""
    if host.startswith("["):
        return _FLAT_IPV6 + host[1:-1].replace(":", ".") + port_part
    return host + port_part


def _flat_fields(tag: str) -> list[str]:
    """Split at separators: the first ``_`` of every odd run of underscores."""
    fields: list[str] = []
    start = 0
    for run in _UNDERSCORE_RUN.finditer(tag):
        if len(run.group()) % 2 == 1:
            fields.append(tag[start : run.start()])
            start = run.start() + 1
    fields.append(tag[start:])
    return fields


def _flat_source(fields: list[str]) -> ImageReference:
    registry = _decode_flat_registry(fields[0])
    last = fields[-1]
    if last.startswith(_FLAT_DIGEST_MARKER):
        return ImageReference(
            registry, _flat_path(fields[1:-1]), None, _decode_flat_digest(last)
        )
    if len(fields) >= 4 and fields[-2].startswith(_FLAT_DIGEST_MARKER):
        # Versioned: registry, path components, digest field, tag.
        return ImageReference(
            registry,
            _flat_path(fields[1:-2]),
            last.replace("__", "_"),
            _decode_flat_digest(fields[-2]),
        )
    return ImageReference(registry, _flat_path(fields[1:-1]), last.replace("__", "_"))


def _flat_path(fields: list[str]) -> str:
    return "/".join(field.replace("__", "_") for field in fields)


def _decode_flat_digest(field: str) -> str:
    algorithm, dash, encoded = field.removeprefix(_FLAT_DIGEST_MARKER).partition("-")
    digest = f"{algorithm}:{encoded}"
    if not dash or digest_problem(digest) is not None:
        raise InvalidReference(field, "bad digest field")
    return digest


def _decode_flat_registry(encoded: str) -> str:
    is_ipv6 = encoded.startswith(_FLAT_IPV6)
    host, separator, port = encoded.removeprefix(_FLAT_IPV6).partition(_FLAT_PORT)
    if is_ipv6:
        host = "[" + host.replace(".", ":") + "]"
    return f"{host}:{port}" if separator else host


def _split_port(registry: str) -> tuple[str, str]:
    """(host, port digits or "") for a valid registry; IPv6 hosts keep their brackets."""
    head, _bracket, tail = registry.rpartition("]")
    host, colon, port = tail.partition(":")
    return head + ("]" if head else "") + host, port if colon else ""


def _double_underscores(text: str) -> str:
    return text.replace("_", "__")


def _full_digest(digest: str) -> str:
    candidate = f"sha256:{digest}" if ":" not in digest else digest
    problem = digest_problem(candidate)
    if problem is not None:
        raise ValueError(f"invalid digest {digest!r}: {problem}")
    return candidate
