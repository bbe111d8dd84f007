"""Registry credentials: read from docker/containers auth files, handed to skopeo in private files.

Secrets never appear in ``repr``/``str`` or in error messages (base64-encoded
or not), and they never go on a command line: skopeo gets them through an
auth file that exists, mode 0600 in a 0700 directory, only while it runs.

Auth file entries (``{"auths": {key: entry}}``) may take any of the forms
docker and podman write: ``{"auth": base64("user:password")}``,
``{"username": ..., "password": ...}`` or ``{"identitytoken": ...}`` (an
OAuth2 refresh token, possibly next to an ``auth``). Keys are
``host[:port]`` or legacy URLs (``https://index.docker.io/v1/``); Docker
Hub's aliases all mean ``docker.io``. Empty entries (docker's placeholder when
a credential helper holds the secret) are skipped: credential helpers are not
supported.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
AUTHFILE_NAME: Final = "auth.json"
# Docker's convention for the username that goes with an identity token.
IDENTITY_TOKEN_USERNAME: Final = "<token>"


class CredentialError(ValueError):
    """A credential or auth file is unusable; names the file and entry, never the secret."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A username and password, or an identity (OAuth2 refresh) token.

    ``repr``/``str`` show the username only; secrets are masked.
    """

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __post_init__(self) -> None:
        for name in ("username", "password", "identity_token"):
            if not isinstance(getattr(self, name), str):
                raise CredentialError(f"credential {name} must be a string")
        if ":" in self.username:
            raise CredentialError("the username contains ':' (basic auth forbids it)")
        if not self.identity_token and not (self.username and self.password):
            raise CredentialError("a credential needs a username and password, or an identity token")

    @property
    def has_password(self) -> bool:
        """Whether this credential can be sent as HTTP basic auth."""
        return bool(self.username and self.password)

    def __repr__(self) -> str:
        secrets = [name for name in ("password", "identity_token") if getattr(self, name)]
        masked = "".join(f", {name}='***'" for name in secrets)
        return f"Credential(username={self.username!r}{masked})"

    __str__ = __repr__


def canonical_registry(key: str) -> str:
    """The registry an auth file key or registry name means: ``host[:port]``, lowercase.

    URLs lose their scheme and path; Docker Hub's aliases become ``docker.io``.
    Raises ``CredentialError`` for keys that name a namespace inside a
    registry (``quay.io/org``), which are not supported, and for empty keys.
    """
    text = key.strip()
    if "://" in text:
        # Drop any userinfo: only the host and port name the registry.
        text = urlsplit(text).netloc.rpartition("@")[2]
    elif "/" in text:
        raise CredentialError(f"key {key!r} is scoped to a repository namespace, which is not supported")
    host = text.lower()
    if not host:
        raise CredentialError(f"key {key!r} names no registry")
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


class CredentialStore:
    """An immutable registry -> ``Credential`` map with docker's lookup rules."""

    __slots__ = ("_credentials",)

    def __init__(self, credentials: Mapping[str, Credential] | None = None) -> None:
        self._credentials: dict[str, Credential] = {
            canonical_registry(registry): credential for registry, credential in (credentials or {}).items()
        }

    @classmethod
    def from_authfile(cls, path: str | os.PathLike[str]) -> CredentialStore:
        """Read a docker ``config.json`` or containers ``auth.json``.

        Raises ``CredentialError`` naming the file (and the entry) when it is
        missing, unreadable or malformed.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CredentialError(f"cannot read auth file {path}: {type(error).__name__}") from None
        return cls.from_docker_config(text, source=f"auth file {path}")

    @classmethod
    def from_docker_config(cls, text: str, *, source: str, legacy: bool = False) -> CredentialStore:
        """Parse the JSON of a docker ``config.json`` (``{"auths": {...}}``), or with ``legacy`` of a
        ``.dockercfg`` (the entries alone), as auth files and pull Secrets hold them.

        Raises ``CredentialError`` naming ``source`` (and the entry), never the content.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            # The decoder's exception carries the whole document: never chain it.
            raise CredentialError(
                f"{source} is not valid JSON (line {error.lineno}, column {error.colno})"
            ) from None
        auths = document if legacy else document.get("auths", {}) if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(auths, dict):
            shape = "a JSON object of registry entries" if legacy else "a JSON object with an 'auths' object"
            raise CredentialError(f"{source} must be {shape}")
        return cls.from_mapping(auths, source=source)

    @classmethod
    def from_mapping(cls, auths: Mapping[str, Any], *, source: str = "credentials") -> CredentialStore:
        """Build a store from auth file entries (the value of ``"auths"``), keyed by registry.

        ``source`` names the origin in error messages. Two keys meaning the
        same registry (``docker.io`` and ``https://index.docker.io/v1/``) are
        an error, since it is unclear which one wins.
        """
        if not isinstance(auths, Mapping):
            raise CredentialError(f"{source}: expected a mapping of registry to auth entry")
        credentials: dict[str, Credential] = {}
        for key, entry in auths.items():
            if not isinstance(key, str):
                raise CredentialError(f"{source}: registry keys must be strings")
            registry = _canonical_in(source, key)
            credential = _parse_entry(source, key, entry)
            if credential is None:
                continue
            if registry in credentials:
                raise CredentialError(f"{source}: entry {key!r} duplicates another entry for {registry}")
            credentials[registry] = credential
        return cls(credentials)

    def with_credential(self, registry: str, credential: Credential) -> CredentialStore:
        """A new store where ``registry`` (any alias) uses ``credential``."""
        return CredentialStore({**self._credentials, canonical_registry(registry): credential})

    def merged(self, other: CredentialStore) -> CredentialStore:
        """A new store with the entries of both; ``other`` wins for registries in both."""
        return CredentialStore({**self._credentials, **other._credentials})

    def lookup(self, registry: str) -> Credential | None:
        """The credential for ``registry`` (``host[:port]``, any Docker Hub alias), if any."""
        try:
            return self._credentials.get(canonical_registry(registry))
        except CredentialError:
            return None

    @property
    def registries(self) -> frozenset[str]:
        """The canonical names of the registries that have a credential."""
        return frozenset(self._credentials)

    def __len__(self) -> int:
        return len(self._credentials)

    def __repr__(self) -> str:
        return f"CredentialStore(registries={sorted(self._credentials)!r})"


def write_authfile(
    store: CredentialStore, registries: Iterable[str], directory: str | os.PathLike[str]
) -> Path:
    """Write ``directory/auth.json`` holding only ``registries``' credentials; return its path.

    Registries without a credential are left out (they are used
    anonymously). The file is created with mode 0600 from its first instant
    and never over an existing file or symlink. ``directory`` must be private
    (no group or other access), like a ``tempfile.mkdtemp()`` directory.
    """
    directory = Path(directory)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        raise CredentialError(
            f"refusing to write credentials into {directory}: group or others can access it"
        )
    auths = _auths(store, registries)
    path = directory / AUTHFILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"auths": auths}, handle)
    return path


@contextlib.contextmanager
def private_authfile(store: CredentialStore, registries: Iterable[str]) -> Iterator[Path]:
    """Yield an auth file with ``registries``' credentials, gone on exit.

    On Linux it exists in memory only: a memfd, yielded as ``/dev/fd/N``, which a
    child process gets with ``subprocess.Popen(pass_fds=(N,))`` (see ``memfd_number``).
    Nothing reaches a disk, so nothing is left behind even when the process is
    SIGKILLed. Elsewhere it is a 0600 file in a fresh ``mkdtemp`` directory (mode
    0700); both are removed whatever happens inside the ``with`` block.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("imageclone-auth.json", os.MFD_CLOEXEC)
        try:
            data = json.dumps({"auths": _auths(store, registries)}).encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            yield Path(f"/dev/fd/{fd}")
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="imageclone-auth-")
    try:
        yield write_authfile(store, registries, directory)
    finally:
        shutil.rmtree(directory)


def memfd_number(authfile: Path) -> int | None:
    """The descriptor to pass to a child when ``authfile`` is an in-memory auth file, else None."""
    text = str(authfile)
    return int(text.removeprefix("/dev/fd/")) if text.startswith("/dev/fd/") else None


def _auths(store: CredentialStore, registries: Iterable[str]) -> dict[str, dict[str, str]]:
    auths = {}
    for registry in registries:
        credential = store.lookup(registry)
        if credential is not None:
            auths[canonical_registry(registry)] = _entry(credential)
    return auths


def _canonical_in(source: str, key: str) -> str:
    try:
        return canonical_registry(key)
    except CredentialError as error:
        raise CredentialError(f"{source}: {error}") from None


def _parse_entry(source: str, key: str, entry: Any) -> Credential | None:
    """The credential of one ``auths`` entry, ``None`` for an empty placeholder."""
    where = f"{source}: entry {key!r}"
    if not isinstance(entry, dict):
        raise CredentialError(f"{where} must be a JSON object")
    fields = {name: entry.get(name, "") for name in ("auth", "username", "password", "identitytoken")}
    if any(not isinstance(value, str) for value in fields.values()):
        raise CredentialError(f"{where}: auth, username, password and identitytoken must be strings")
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        username, password = _decode_auth(where, fields["auth"])
    if not (username or password or fields["identitytoken"]):
        return None
    if username == IDENTITY_TOKEN_USERNAME and fields["identitytoken"]:
        username, password = "", ""
    try:
        return Credential(username, password, fields["identitytoken"])
    except CredentialError as error:
        raise CredentialError(f"{where}: {error}") from None


def _decode_auth(where: str, encoded: str) -> tuple[str, str]:
    # Decoding errors are never chained: their context can hold the secret's bytes.
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and a non-ASCII str's ValueError
        raise CredentialError(f"{where}: 'auth' is not base64 of UTF-8 text") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise CredentialError(f"{where}: 'auth' does not decode to 'username:password'")
    # Some tools pad the password with NUL bytes; docker strips them too.
    return username, password.strip("\x00")


def _entry(credential: Credential) -> dict[str, str]:
    if not credential.identity_token:
        return {"auth": basic_token(credential.username, credential.password)}
    # containers/image reads an identity token only next to an auth that decodes to "user:...".
    username = credential.username or IDENTITY_TOKEN_USERNAME
    return {"auth": basic_token(username, credential.password), "identitytoken": credential.identity_token}


def basic_token(username: str, password: str) -> str:
    """``base64(username:password)``: the ``auth`` of an auth file and the credentials of HTTP Basic
    authentication (the one encoding every part of the product uses, and redacts)."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# The docker-registry Secret image-clone writes into namespaces whose workloads pull from a private backup.
DEFAULT_SECRET_NAME: Final = "imageclone-backup-pull"


@dataclass(frozen=True, repr=False)
class PullSecret:
    """Credentials workloads need to pull from a private backup registry (repr hides them)."""

    registry: str
    username: str
    password: str
    name: str = DEFAULT_SECRET_NAME

    def __repr__(self) -> str:
        return f"PullSecret(registry={self.registry!r}, name={self.name!r})"
