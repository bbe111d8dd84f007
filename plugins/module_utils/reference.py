"""Container image references, parsed and normalized the way docker does.

The grammar is the one of github.com/distribution/reference::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path                  (at most 255 characters)
    domain           := host [ ":" port ]
    host             := domain-name | "[" IPv6 "]"
    domain-name      := label ( "." label )*               label: [A-Za-z0-9] with inner "-"
    port             := [0-9]+
    path             := component ( "/" component )*
    component        := [a-z0-9]+ ( separator [a-z0-9]+ )*
    separator        := "." | "_" | "__" | "-"+
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex                  (sha256: 64, sha384: 96,
                                                            sha512: 128 lowercase hex)

Normalization follows docker's ``ParseNormalizedNamed``:

* the first ``/``-separated component is a registry only when it contains
  ``.`` or ``:``, is ``localhost``, or contains an uppercase letter (docker
  reads ``Foo/bar`` as registry ``Foo``); otherwise the whole name is a
  Docker Hub path: ``nginx`` -> ``docker.io/library/nginx``,
  ``foo/bar`` -> ``docker.io/foo/bar``;
* ``index.docker.io`` becomes ``docker.io``;
* single-component Docker Hub paths get ``library/``;
* a bare 64-hex string is refused (it would be an image ID);
* no tag and no digest means tag ``latest`` (``default_tag``).

One deliberate difference: docker accepts a first component such as
``my_reg.io`` (taken as a registry because of the dot, yet not a valid host)
by silently producing a reference with *no* registry at all. Such a
reference cannot be pulled from anywhere sensible, so it is refused here.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace
from typing import Final

DEFAULT_REGISTRY: Final = "docker.io"
LEGACY_DEFAULT_REGISTRY: Final = "index.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
LOCALHOST: Final = "localhost"
DEFAULT_TAG: Final = "latest"
NAME_LENGTH_MAX: Final = 255
TAG_LENGTH_MAX: Final = 128
DIGEST_HEX_LENGTHS: Final[dict[str, int]] = {"sha256": 64, "sha384": 96, "sha512": 128}

# No valid reference is longer than about 530 characters (255 name + 129 tag
# + 136 digest, plus the "index." of a legacy Docker Hub spelling), so this
# bound refuses nothing valid and keeps hostile inputs cheap to reject.
_INPUT_LENGTH_MAX: Final = 1024

_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_IPV6_LITERAL: Final = re.compile(r"\[[A-Fa-f0-9:]+\]")
_PORT: Final = re.compile(r"[0-9]+")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_ID: Final = re.compile(r"[a-f0-9]{64}")
_LOWER_HEX: Final = re.compile(r"[0-9a-f]+")
_PATH_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "._-/")
_REFERENCE_CHARS: Final = frozenset(string.ascii_letters + string.digits + "._-/:@[]+")


class InvalidReference(ValueError):
    """An image reference that the grammar refuses; names the input and the reason."""

    def __init__(self, reference: str, reason: str) -> None:
        # Both parts go to args so that the exception survives pickling.
        super().__init__(reference, reason)
        self.reference = reference
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid image reference {self.reference!r}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalized, fully qualified image reference.

    Construction validates every field, so an instance always satisfies
    ``parse_reference(str(ref), default_tag=None) == ref``. ``tag`` and
    ``digest`` may both be ``None`` (a bare repository name).
    """

    registry: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        for value in (self.registry, self.path):
            if not isinstance(value, str):
                raise TypeError(f"registry and path must be str, got {value!r}")
        for optional in (self.tag, self.digest):
            if optional is not None and not isinstance(optional, str):
                raise TypeError(f"tag and digest must be str or None, got {optional!r}")
        problem = _reference_problem(self.registry, self.path, self.tag, self.digest)
        if problem is not None:
            raise InvalidReference(
                _join(self.registry, self.path, self.tag, self.digest), problem
            )

    @property
    def repository(self) -> str:
        """``registry/path``, without tag or digest."""
        return f"{self.registry}/{self.path}"

    @property
    def familiar(self) -> str:
        """Docker's short form (``nginx:1.27``, ``foo/bar``, ``quay.io/a/b@sha256:...``).

        Unlike docker, keeps ``docker.io/`` when dropping it would make the
        result name another registry (``docker.io/foo.bar/baz``) and keeps
        ``library/`` when dropping it would leave a bare image ID, so the
        result always parses back to this reference (with ``default_tag=None``).
        """
        return _join_name_suffix(self._familiar_name(), self.tag, self.digest)

    def _familiar_name(self) -> str:
        if self.registry != DEFAULT_REGISTRY:
            return self.repository
        short = self.path
        official = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        if official != self.path and "/" not in official:
            short = official
        if "/" in short and is_domain_like(short.partition("/")[0]):
            return self.repository
        if self.tag is None and self.digest is None and _IMAGE_ID.fullmatch(short):
            return self.path
        return short

    def __str__(self) -> str:
        return _join(self.registry, self.path, self.tag, self.digest)

    def with_tag(self, tag: str | None) -> ImageReference:
        """The same reference with ``tag`` (validated) in place of the current one."""
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> ImageReference:
        """The same reference with ``digest`` (validated) in place of the current one."""
        return replace(self, digest=digest)

    def without_tag(self) -> ImageReference:
        """The same reference with no tag."""
        return replace(self, tag=None)

    def without_digest(self) -> ImageReference:
        """The same reference with no digest."""
        return replace(self, digest=None)


def parse_reference(
    text: str, *, default_tag: str | None = DEFAULT_TAG
) -> ImageReference:
    """Parse and normalize ``text`` like docker's ``ParseNormalizedNamed``.

    When ``text`` has neither tag nor digest, the result gets ``default_tag``;
    pass ``default_tag=None`` to learn whether a tag was given at all.
    Raises ``InvalidReference`` (naming ``text`` and the reason) for every
    ``str`` that the grammar refuses, ``TypeError`` for non-``str`` input and
    ``ValueError`` for an invalid ``default_tag``. The result is a fixed
    point: ``parse_reference(str(result)) == result``.
    """
    if not isinstance(text, str):
        raise TypeError(f"image reference must be str, got {type(text).__name__}")
    default_problem = tag_problem(default_tag) if default_tag is not None else None
    if default_problem is not None:
        raise ValueError(f"default_tag {default_tag!r}: {default_problem}")
    problem = _text_problem(text)
    if problem is not None:
        raise InvalidReference(text, problem)
    registry, remainder = split_domain(text)
    path, tag, digest = _split_remainder(text, remainder)
    if tag is None and digest is None:
        tag = default_tag
    try:
        return ImageReference(registry, path, tag, digest)
    except InvalidReference as error:
        raise InvalidReference(text, error.reason) from None


def split_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (registry, rest) exactly like docker's splitDockerDomain.

    ``rest`` is everything after the registry, tag and digest included. Does
    not validate; ``index.docker.io`` becomes ``docker.io`` and
    single-component Docker Hub names get ``library/``.
    """
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_REGISTRY, OFFICIAL_REPO_PREFIX + name
    if is_domain_like(first):
        registry = DEFAULT_REGISTRY if first == LEGACY_DEFAULT_REGISTRY else first
        remote = rest
    else:
        registry, remote = DEFAULT_REGISTRY, name
    if registry == DEFAULT_REGISTRY and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return registry, remote


def is_domain_like(component: str) -> bool:
    """Whether docker reads a leading name ``component`` as a registry rather than a path."""
    return (
        component == LOCALHOST
        or "." in component
        or ":" in component
        or component.lower() != component
    )


def registry_problem(registry: str) -> str | None:
    """Why ``registry`` is not a valid ``host[:port]``, or ``None`` when it is."""
    if registry.startswith("["):
        host, bracket, port_part = registry.partition("]")
        host += bracket
        if not _IPV6_LITERAL.fullmatch(host):
            return f"registry {registry!r} has an invalid IPv6 literal"
    else:
        host, colon, port = registry.partition(":")
        port_part = colon + port
        problem = _domain_name_problem(host)
        if problem is not None:
            return f"registry {registry!r}: {problem}"
    if port_part and not (port_part.startswith(":") and _PORT.fullmatch(port_part[1:])):
        return f"registry {registry!r} has an invalid port (digits expected after ':')"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a valid repository path, or ``None`` when it is."""
    if not path:
        return "repository path is empty"
    if any(char in string.ascii_uppercase for char in path):
        return f"repository path {path!r} must be lowercase"
    bad = next((char for char in path if char not in _PATH_CHARS), None)
    if bad is not None:
        return f"repository path {path!r} contains invalid character {bad!r}"
    for component in path.split("/"):
        problem = _component_problem(path, component)
        if problem is not None:
            return problem
    return None


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid tag, or ``None`` when it is."""
    if not tag:
        return "tag is empty"
    if len(tag) > TAG_LENGTH_MAX:
        return f"tag is {len(tag)} characters long, more than {TAG_LENGTH_MAX}"
    if not _TAG.fullmatch(tag):
        return f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
    return None


def digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a supported ``algorithm:hex`` digest, or ``None``."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon:
        return f"digest {digest!r} must be algorithm:hex"
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        supported = ", ".join(DIGEST_HEX_LENGTHS)
        return f"digest algorithm {algorithm!r} is not supported ({supported})"
    if not _LOWER_HEX.fullmatch(encoded) or len(encoded) != expected:
        return f"{algorithm} digest needs {expected} lowercase hex characters, got {encoded!r}"
    return None


def _reference_problem(
    registry: str, path: str, tag: str | None, digest: str | None
) -> str | None:
    """Why these fields do not form a normalized reference, or ``None``."""
    return (
        registry_problem(registry)
        or _normalization_problem(registry, path)
        or path_problem(path)
        or _length_problem(registry, path)
        or (tag_problem(tag) if tag is not None else None)
        or (digest_problem(digest) if digest is not None else None)
    )


def _normalization_problem(registry: str, path: str) -> str | None:
    # A non-normalized field would not survive str() -> parse_reference().
    if registry == LEGACY_DEFAULT_REGISTRY:
        return f"registry must be spelled {DEFAULT_REGISTRY!r}, not {registry!r}"
    if not is_domain_like(registry):
        return (
            f"registry {registry!r} would be read as a Docker Hub path "
            "(a registry needs '.', ':', 'localhost' or an uppercase letter)"
        )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        return (
            f"Docker Hub path {path!r} must be spelled {OFFICIAL_REPO_PREFIX + path!r}"
        )
    return None


def _length_problem(registry: str, path: str) -> str | None:
    length = len(registry) + 1 + len(path)
    if length > NAME_LENGTH_MAX:
        return f"name {registry}/{path} is {length} characters long, more than {NAME_LENGTH_MAX}"
    return None


def _domain_name_problem(host: str) -> str | None:
    if not host:
        return "host is empty"
    for label in host.split("."):
        if not _DOMAIN_LABEL.fullmatch(label):
            return (
                f"host label {label!r} is invalid "
                "(letters, digits and inner '-', separated by single dots)"
            )
    return None


def _component_problem(path: str, component: str) -> str | None:
    if not component:
        return f"repository path {path!r} has an empty component (leading, trailing or double '/')"
    if component[0] in "._-" or component[-1] in "._-":
        return f"path component {component!r} starts or ends with a separator"
    if not _PATH_COMPONENT.fullmatch(component):
        return (
            f"path component {component!r} has an invalid separator "
            "(between letters and digits only '.', '_', '__' or dashes are allowed)"
        )
    return None


def _text_problem(text: str) -> str | None:
    """Problems visible before splitting: emptiness, size, characters, image IDs."""
    if not text:
        return "reference is empty"
    if len(text) > _INPUT_LENGTH_MAX:
        return (
            f"reference is {len(text)} characters long; no valid reference is that long"
        )
    # Nearly every reference passes the set test; only a bad one is walked to name its first culprit.
    if not _REFERENCE_CHARS.issuperset(text):
        for char in text:
            problem = _character_problem(char)
            if problem is not None:
                return problem
    if _IMAGE_ID.fullmatch(text):
        return "a 64-character hexadecimal name is ambiguous with an image ID"
    return None


def _character_problem(char: str) -> str | None:
    if not char.isascii():
        return f"contains non-ASCII character {char!r}"
    if char.isspace():
        return f"contains whitespace {char!r}"
    if not char.isprintable():
        return f"contains control character {char!r}"
    if char not in _REFERENCE_CHARS:
        return f"contains invalid character {char!r}"
    return None


def _split_remainder(text: str, remainder: str) -> tuple[str, str | None, str | None]:
    """Split ``path[:tag][@digest]`` into its parts; empty parts are errors."""
    name, at, digest = remainder.partition("@")
    if "@" in digest:
        raise InvalidReference(text, "contains more than one '@'")
    path, colon, tag = name.partition(":")
    if ":" in tag:
        raise InvalidReference(text, "contains more than one ':' after the registry")
    if colon and not tag:
        raise InvalidReference(text, "tag is empty")
    if at and not digest:
        raise InvalidReference(text, "digest is empty")
    return path, (tag if colon else None), (digest if at else None)


def _join(registry: str, path: str, tag: str | None, digest: str | None) -> str:
    return _join_name_suffix(f"{registry}/{path}", tag, digest)


def _join_name_suffix(name: str, tag: str | None, digest: str | None) -> str:
    tag_part = f":{tag}" if tag is not None else ""
    digest_part = f"@{digest}" if digest is not None else ""
    return name + tag_part + digest_part
