"""Does an image exist, and what is its digest? Asked with manifest HEADs only.

``RegistryClient.head_manifest`` sends ``HEAD /v2/<path>/manifests/<ref>``
and never a GET: Docker Hub counts manifest GETs as pulls against its rate
limit, HEADs it does not. ``list_tags`` reads one page of a repository's tag
list (a GET, but of no manifest), where a digest's signatures and referrers sit;
``referrers`` asks the OCI 1.1 referrers API for the rest.
Copiers send the rest of the distribution API through ``request`` and
``fetch``, authorized the same way (push scope for a bearer token); only a
HEAD ever decides whether to copy.

Authentication follows the distribution spec. A 401 carries a
``WWW-Authenticate`` challenge; ``Basic`` gets the stored username and
password, ``Bearer`` gets a token from the challenge's realm for
``repository:<path>:pull`` (anonymously when no credential is stored). The
request is then retried once. Tokens are cached per (registry, scope) until
shortly before ``expires_in`` and fetched once even when many threads want
the same one. The scheme a registry asked for is remembered, so later requests
carry auth from the start instead of paying a 401 round trip each.

Throttling: 429 and 503 set a per-registry backoff that every thread honours
(``Retry-After`` when given, else capped exponential backoff with jitter),
and the request is retried up to ``max_retries`` times. A Retry-After longer
than ``max_backoff`` is not slept through: ``RateLimited`` is raised at
once, so a worker thread is never parked for hours. Docker Hub's
``RateLimit-*`` headers are exposed through ``rate_limit_state``.
"""
from __future__ import annotations

import copy
import email.utils
import hashlib
import json
import os
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeAlias, Union
from urllib.parse import urlencode, urlsplit

try:
    import urllib3
except ImportError as error:  # Ansible modules report it through missing_required_lib
    URLLIB3_IMPORT_ERROR: ImportError | None = error
else:
    URLLIB3_IMPORT_ERROR = None

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    Credential,
    CredentialStore,
    basic_token,
)
from ansible_collections.imageclone.backup.plugins.module_utils.proxies import Proxy, ProxyEnvironment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    digest_problem,
)

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPES: Final = (
    OCI_INDEX,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DEFAULT_USER_AGENT: Final = "image-clone"
DEFAULT_TOKEN_LIFETIME: Final = 60  # seconds, as the token spec says for a missing expires_in
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
THROTTLING_STATUSES: Final = frozenset({429, 503})
# Docker Hub serves the API of "docker.io" from another host.
_API_HOSTS: Final = {"docker.io": "registry-1.docker.io"}
_TOKEN_MARGIN_MAX: Final = 30.0
# Answers of a registry without the referrers API to a query of it; 400 is what some give for
# an unknown route, and a registry with the API sends it only for a malformed digest, which is never sent.
_NO_REFERRERS_API: Final = frozenset({400, 404, 405, 406})
# Seconds a registry's lack of the referrers API is believed: one question per registry, not per image,
# and an upgraded registry is found within the hour.
REFERRERS_API_RECHECK: Final = 3600.0
_OAUTH_CLIENT_ID: Final = "image-clone"

_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_SCHEME_RE: Final = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM_RE: Final = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*(,|$)")
_DIGITS_RE: Final = re.compile(r"[0-9]+")

# A request body: text or bytes (sent again on a retry), or a stream of chunks (sent once).
Body: TypeAlias = Union[str, bytes, Iterable[bytes], None]


class RegistryError(Exception):
    """A registry could not answer about ``reference``; names both, never credentials or tokens."""

    def __init__(self, reference: ImageReference, detail: str) -> None:
        super().__init__(reference, detail)
        self.reference = reference
        self.registry = reference.registry
        self.detail = detail

    def __str__(self) -> str:
        return f"registry {self.registry}, image {self.reference}: {self.detail}"


class RegistryAuthError(RegistryError):
    """The registry refused access (401/403) even after authenticating."""


class RegistryUnavailable(RegistryError):
    """Connection failures, timeouts or 5xx answers persisted through every retry."""


class RateLimited(RegistryError):
    """The registry throttles us; ``retry_after``: seconds to wait before asking again (what the registry said
    in Retry-After, else the backoff this client would have slept next)."""

    def __init__(self, reference: ImageReference, detail: str, retry_after: float) -> None:
        super().__init__(reference, detail)
        self.args = (reference, detail, retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a manifest HEAD tells: the digest, the media type and the size in bytes."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class TagPage:
    """One page of a tag list: its tags, and whether the registry has more (a ``Link`` to the next page)."""

    tags: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """A registry's last reported quota (``None`` where unknown) and our backoff deadline.

    ``window`` is in seconds; ``backoff_until`` is a ``time.time()``
    timestamp, ``None`` unless a backoff is in force right now.
    """

    limit: int | None = None
    remaining: int | None = None
    window: int | None = None
    backoff_until: float | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: lowercase scheme, parameters with lowercase names."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 9110), possibly holding several challenges.

    Parameter values may be tokens or quoted strings with commas and
    backslash escapes. Malformed input yields fewer challenges, never an error.
    """
    challenges = []
    position = 0
    while (scheme := _SCHEME_RE.match(header, position)) is not None:
        position = scheme.end()
        params = {}
        while (param := _PARAM_RE.match(header, position)) is not None:
            params[param[1].lower()] = _unquote(param[2])
            position = param.end()
        challenges.append(Challenge(scheme[1].lower(), params))
    return challenges


def parse_rate_limit(value: str | None) -> tuple[int | None, int | None]:
    """``(quota, window seconds)`` of a ``RateLimit-*`` header like Docker Hub's ``100;w=21600``.

    Only the first policy of a comma-separated list counts; unparsable parts are ``None``.
    """
    if not value:
        return None, None
    quota, *params = (part.strip() for part in value.split(",")[0].split(";"))
    window = None
    for param in params:
        name, _equals, number = param.partition("=")
        if name.strip().lower() == "w" and _DIGITS_RE.fullmatch(number.strip()):
            window = int(number)
    return (int(quota) if _DIGITS_RE.fullmatch(quota) else None), window


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``now`` (a ``time.time()``) per a ``Retry-After`` value.

    Accepts delta-seconds and HTTP dates (past dates give 0); ``None`` when absent or invalid.
    """
    if value is None:
        return None
    value = value.strip()
    if _DIGITS_RE.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 30.0,
                  jitter: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 for the first request).

    ``retry_after`` wins when given (uncapped: the caller decides whether to
    wait that long). Otherwise ``base * 2**attempt`` capped at ``cap``, of
    which a random half (``jitter`` in [0, 1), random when ``None``) is
    dropped, so that threads throttled together do not retry together.
    """
    if retry_after is not None:
        return retry_after
    ceiling = min(cap, base * 2 ** attempt)
    return ceiling / 2 * (1 + (random.random() if jitter is None else jitter))


def should_retry(attempt: int, delay: float, *, max_retries: int, max_backoff: float) -> bool:
    """Whether to wait ``delay`` seconds and send attempt ``attempt + 1``."""
    return attempt < max_retries and delay <= max_backoff


def referrers_api_absent(status: int, content_type: str) -> bool:
    """Whether a referrers query answered ``status`` with ``content_type`` says the registry has no such API:
    an unknown route, or a success that is no OCI index (a catch-all page); other errors are errors."""
    return status in _NO_REFERRERS_API or (status == 200 and content_type.partition(";")[0].strip() != OCI_INDEX)


def token_lifetime(expires_in: object) -> float:
    """Seconds a bearer token may be reused: ``expires_in`` (default 60) minus a safety margin.

    The margin (a fifth, at most 30 s) covers clock skew and requests in flight.
    """
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        seconds = float(expires_in)
    else:
        seconds = float(DEFAULT_TOKEN_LIFETIME)
    return seconds - min(_TOKEN_MARGIN_MAX, seconds / 5)


def tls_context(ca_bundle: Path | None = None, certs_dir: Path | None = None) -> ssl.SSLContext:
    """A verifying TLS context: the system CAs plus ``ca_bundle`` and every ``certs_dir/*.crt``."""
    context = ssl.create_default_context()
    if certs_dir is not None and not Path(certs_dir).is_dir():
        raise ValueError(f"certs_dir {certs_dir} is not a directory")
    extra = [Path(ca_bundle)] if ca_bundle is not None else []
    extra += sorted(Path(certs_dir).glob("*.crt")) if certs_dir is not None else []
    for path in extra:
        try:
            context.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cannot load CA certificates from {path}: {error}") from None
    return context


# A token is only reused with the credential that fetched it: clients with other credentials share the cache.
_TokenKey: TypeAlias = "tuple[str, str, Credential | None]"


class _TokenCache:
    """Bearer tokens per (registry, scope, credential); each is fetched by one thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[_TokenKey, tuple[str, float]] = {}
        self._fetch_locks: dict[_TokenKey, threading.Lock] = {}

    def get(self, key: _TokenKey) -> str | None:
        with self._lock:
            token, expires = self._tokens.get(key, ("", 0.0))
        return token if token and time.monotonic() < expires else None

    def get_or_fetch(self, key: _TokenKey, fetch: Callable[[], tuple[str, float]],
                     rejected: str | None = None) -> str:
        """A valid cached token other than ``rejected``, else ``fetch()``'s (token, lifetime)."""
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:
            # Another thread may have fetched while this one waited for the lock.
            cached = self.get(key)
            if cached is not None and cached != rejected:
                return cached
            token, lifetime = fetch()
            with self._lock:
                self._tokens[key] = (token, time.monotonic() + lifetime)
            return token


class RegistryClient:
    """A thread-safe OCI distribution client for manifest existence checks (HEAD only) and tag lists.

    TLS is always verified against the system CAs plus ``ca_bundle`` and
    ``certs_dir/*.crt``; only registries in ``insecure_registries`` are
    spoken to over plain HTTP. ``max_backoff`` bounds any single wait (a
    longer Retry-After raises ``RateLimited`` at once); ``pool_size`` is the
    number of connections kept per host, to match the worker threads.
    ``sleep`` waits out backoffs (pass a stop event's ``wait`` to make them
    interruptible). Each request goes through the proxy ``proxies`` names for
    its URL (the registry's, or its token service's), else direct; ``proxies``
    defaults to the process environment's.
    """

    def __init__(self, credentials: CredentialStore, ca_bundle: Path | None = None,
                 certs_dir: Path | None = None, timeout: float = 10, max_retries: int = 4,
                 user_agent: str = DEFAULT_USER_AGENT, *, insecure_registries: frozenset[str] = frozenset(),
                 max_backoff: float = 30.0, pool_size: int = 16,
                 sleep: Callable[[float], object] = time.sleep, proxies: ProxyEnvironment | None = None) -> None:
        if URLLIB3_IMPORT_ERROR is not None:
            raise RuntimeError(f"urllib3 cannot be imported: {URLLIB3_IMPORT_ERROR}")
        self._credentials = credentials
        self._insecure = frozenset(insecure_registries)
        self._max_retries = max_retries
        self._max_backoff = max_backoff
        self._user_agent = user_agent
        self._sleep = sleep
        self._proxies = ProxyEnvironment.from_environ(os.environ) if proxies is None else proxies
        context = tls_context(ca_bundle, certs_dir)
        # block=False: a burst beyond pool_size opens extra connections instead of queueing.
        self._pool_options: dict[str, Any] = {
            "num_pools": 64, "maxsize": pool_size, "block": False, "ssl_context": context,
            "timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False,
        }
        self._pool = urllib3.PoolManager(**self._pool_options)
        self._proxy_pools: dict[Proxy, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        # Per registry: whether it serves the referrers API, and when (time.monotonic()) it answered so.
        self._referrers_api: dict[str, tuple[bool, float]] = {}
        self._referrers_probes: dict[str, threading.Lock] = {}
        self._rate_limits: dict[str, RateLimitState] = {}
        self._requests: Counter[str] = Counter()
        self._tokens = _TokenCache()

    def head_manifest(self, ref: ImageReference) -> ManifestInfo | None:
        """The manifest's digest, media type and size, or ``None`` when the registry has no such image.

        Sends ``HEAD`` only. When ``ref`` has a digest, it is looked up by
        digest and the answer must carry that digest. Raises
        ``RegistryAuthError``, ``RateLimited``, ``RegistryUnavailable`` or
        ``RegistryError`` (for example when the registry omits
        ``Docker-Content-Digest``); ``ValueError`` when ``ref`` has neither tag nor digest.
        """
        target = ref.digest or ref.tag
        if target is None:
            raise ValueError(f"{ref} has neither tag nor digest")
        url = f"{self._base_url(ref.registry)}/v2/{ref.path}/manifests/{target}"
        response = self._authorized(ref, "HEAD", url, {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)})
        if response.status == 404:
            return None
        if response.status != 200:
            raise RegistryError(ref, f"unexpected HTTP {response.status} to a manifest HEAD")
        return _manifest_info(ref, response.headers)

    def request(self, ref: ImageReference, method: str, target: str, headers: Mapping[str, str] | None = None,
                *, push: bool = False, mount_from: str | None = None, body: Body = None,
                stream: bool = False) -> urllib3.BaseHTTPResponse:
        """Any request to ``ref``'s repository, authorized like ``head_manifest``'s, for copiers.

        ``target`` is a path under the registry (``/v2/...``) or an absolute URL
        (an upload's ``Location``); ``push`` asks for pull and push access, and
        ``mount_from`` (a repository path of the same registry) for pull access
        to it too, as a cross-repository mount needs. The response is returned
        whatever its status; with ``stream`` its body is left unread (the caller
        reads it, then releases or closes it). Raises the errors of ``head_manifest``.
        """
        url = target if "://" in target else f"{self._base_url(ref.registry)}{target}"
        scope = f"repository:{ref.path}:{'pull,push' if push else 'pull'}"
        if mount_from is not None:
            scope += f" repository:{mount_from}:pull"
        return self._authorized(ref, method, url, dict(headers or {}), scope, body, stream)

    def fetch(self, ref: ImageReference, url: str) -> urllib3.BaseHTTPResponse:
        """A streamed GET of ``url`` with no credentials: where a registry redirects a blob download
        (a CDN's signed URL, which must not see the registry's credentials)."""
        return self._send(ref, "GET", url, {}, stream=True)

    def list_tags(self, ref: ImageReference, *, last: str, count: int) -> TagPage | None:
        """Up to ``count`` tags of ``ref``'s repository that sort after ``last``, in the registry's order
        (lexical, as the distribution spec asks), from one ``GET /v2/<path>/tags/list?n=&last=``;
        ``None`` when the repository does not exist. A registry that ignores ``last`` answers from its first tag
        (docker-registry 2.8 sends every tag at once): the caller checks. Raises like ``head_manifest``.
        """
        query = urlencode({"n": count, "last": last})
        url = f"{self._base_url(ref.registry)}/v2/{ref.path}/tags/list?{query}"
        response = self._authorized(ref, "GET", url, {"Accept": "application/json"})
        if response.status == 404:
            return None
        if response.status != 200:
            raise RegistryError(ref, f"unexpected HTTP {response.status} to a tag list")
        tags = _listed(ref, response.data, "tags", "tag list")
        if not all(isinstance(tag, str) for tag in tags):
            raise RegistryError(ref, "the tag list's tags are not a list of strings")
        return TagPage(tuple(tags), 'rel="next"' in response.headers.get("Link", ""))

    def referrers(self, repository: ImageReference, digest: str) -> tuple[dict[str, Any], ...] | None:
        """The descriptors of the manifests whose ``subject`` is ``digest`` in ``repository``, as the registry
        lists them (``artifactType`` and ``annotations`` included), from one ``GET
        /v2/<path>/referrers/<digest>``; ``None`` where the registry has no referrers API. Such a registry
        is not asked again before ``REFERRERS_API_RECHECK`` seconds, and one that has not answered yet is
        asked by one thread at a time. Only the first page of a paged answer is read. Raises like
        ``head_manifest``.
        """
        problem = digest_problem(digest)
        if problem is not None:
            raise ValueError(f"invalid digest {digest!r}: {problem}")
        registry = repository.registry
        serves = self._serves_referrers(registry)
        if serves is None:
            with self._lock:
                probe = self._referrers_probes.setdefault(registry, threading.Lock())
            # Until the registry has answered, one query at a time: the threads waiting learn from its answer.
            with probe:
                serves = self._serves_referrers(registry)
                if serves is None:
                    return self._query_referrers(repository, digest)
        return self._query_referrers(repository, digest) if serves else None

    def _serves_referrers(self, registry: str) -> bool | None:
        """Whether ``registry`` serves the referrers API, as it answered; ``None``: ask it (again)."""
        with self._lock:
            serves, when = self._referrers_api.get(registry, (False, -REFERRERS_API_RECHECK))
        return None if not serves and time.monotonic() - when >= REFERRERS_API_RECHECK else serves

    def _query_referrers(self, repository: ImageReference, digest: str) -> tuple[dict[str, Any], ...] | None:
        url = f"{self._base_url(repository.registry)}/v2/{repository.path}/referrers/{digest}"
        response = self._authorized(repository, "GET", url, {"Accept": OCI_INDEX})
        absent = referrers_api_absent(response.status, response.headers.get("Content-Type", ""))
        if absent or response.status == 200:
            with self._lock:
                self._referrers_api[repository.registry] = (not absent, time.monotonic())
        if absent:
            return None
        if response.status != 200:
            raise RegistryError(repository, f"unexpected HTTP {response.status} to a referrers query")
        manifests = _listed(repository, response.data, "manifests", "referrers answer")
        if not all(_is_descriptor(entry) for entry in manifests):
            raise RegistryError(repository, "the referrers answer lists something other than descriptors")
        return tuple(manifests)

    def with_credentials(self, credentials: CredentialStore) -> RegistryClient:
        """This client answering with ``credentials``; connections, tokens, throttling and counts stay shared."""
        view = copy.copy(self)
        view._credentials = credentials
        return view

    def rate_limit_state(self, registry: str) -> RateLimitState:
        """The last ``RateLimit-*`` values ``registry`` reported and the backoff in force, if any."""
        with self._lock:
            state = self._rate_limits.get(registry, RateLimitState())
        if state.backoff_until is not None and state.backoff_until <= time.time():
            return replace(state, backoff_until=None)
        return state

    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent so far per ``host[:port]`` (token services included)."""
        with self._lock:
            return dict(self._requests)

    def close(self) -> None:
        """Close pooled connections; the client stays usable and reconnects on demand."""
        self._pool.clear()
        with self._lock:
            proxy_pools = list(self._proxy_pools.values())
        for pool in proxy_pools:
            pool.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- authentication --------------------------------------------------------------

    def _authorized(self, ref: ImageReference, method: str, url: str, headers: dict[str, str],
                    scope: str | None = None, body: Body = None, stream: bool = False) -> urllib3.BaseHTTPResponse:
        """Send the request with whatever auth the registry wants; one retry after a 401. ``scope``:
        the token scopes, space-separated (default: pull access to ``ref``'s repository)."""
        scope = scope or f"repository:{ref.path}:pull"
        sent = self._upfront_authorization(ref, scope)
        response = self._send(ref, method, url, _with_auth(headers, sent), body, stream=stream)
        if response.status == 401:
            response.drain_conn()
            challenge = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
            if challenge is None:
                raise RegistryAuthError(ref, "HTTP 401 without a Basic or Bearer challenge")
            with self._lock:
                self._challenges[ref.registry] = challenge
            fresh = self._authorization(ref, challenge, scope, rejected=sent)
            if fresh != sent and not _replayable(body):
                # The body was a stream, consumed by the refused request: the caller sends it again.
                raise RegistryUnavailable(ref, f"the registry asked to authenticate again during a {method}")
            if fresh != sent:
                response = self._send(ref, method, url, _with_auth(headers, fresh), body, stream=stream)
            if response.status == 401:
                error = _preferred_challenge(response.headers.get("WWW-Authenticate", ""))
                reason = error.params.get("error") if error is not None else None
                raise RegistryAuthError(ref, self._refusal(ref, 401, reason))
        if response.status == 403:
            raise RegistryAuthError(ref, self._refusal(ref, 403, None))
        return response

    def _upfront_authorization(self, ref: ImageReference, scope: str) -> str | None:
        with self._lock:
            challenge = self._challenges.get(ref.registry)
        return None if challenge is None else self._authorization(ref, challenge, scope)

    def _authorization(self, ref: ImageReference, challenge: Challenge, scope: str,
                       rejected: str | None = None) -> str:
        """An ``Authorization`` value answering ``challenge``; ``rejected`` is not reused."""
        credential = self._credentials.lookup(ref.registry)
        if challenge.scheme == "basic":
            if credential is None or not credential.has_password:
                raise RegistryAuthError(ref, "the registry wants basic auth; no username/password configured")
            return _basic(credential)
        stale = rejected.removeprefix("Bearer ") if rejected else None
        token = self._tokens.get_or_fetch(
            (ref.registry, scope, credential), lambda: self._fetch_token(ref, challenge, scope, credential), stale)
        return f"Bearer {token}"

    def _fetch_token(self, ref: ImageReference, challenge: Challenge, scope: str,
                     credential: Credential | None) -> tuple[str, float]:
        """Ask the challenge's realm for a ``scope`` token; return (token, reusable seconds)."""
        realm = challenge.params.get("realm", "")
        self._check_realm(ref, realm)
        # One scope parameter per scope, as the token spec wants several.
        query = [("scope", one) for one in scope.split(" ")]
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        headers = {"User-Agent": self._user_agent}
        if credential is not None and credential.identity_token:
            # An identity token is an OAuth2 refresh token: exchanged by POST, per the token spec.
            form = [*query, ("grant_type", "refresh_token"), ("refresh_token", credential.identity_token),
                    ("client_id", _OAUTH_CLIENT_ID)]
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._send(ref, "POST", realm, headers, body=urlencode(form))
        else:
            if credential is not None and credential.has_password:
                headers["Authorization"] = _basic(credential)
            separator = "&" if urlsplit(realm).query else "?"
            response = self._send(ref, "GET", f"{realm}{separator}{urlencode(query)}", headers)
        host = urlsplit(realm).netloc
        if response.status in (401, 403):
            refused = f"token service {host} refused {self._who(ref)} (HTTP {response.status})"
            raise RegistryAuthError(ref, refused)
        if response.status != 200:
            raise RegistryError(ref, f"token service {host} answered HTTP {response.status}")
        return _token_from(ref, host, response.data)

    def _check_realm(self, ref: ImageReference, realm: str) -> None:
        parts = urlsplit(realm)
        secure = parts.scheme == "https" or (parts.scheme == "http" and parts.netloc in self._insecure)
        if secure and parts.netloc:
            return
        # Credentials must not travel in clear text to a host nobody declared insecure.
        raise RegistryAuthError(ref, f"refusing bearer realm {realm!r} (https URL expected)")

    def _refusal(self, ref: ImageReference, status: int, reason: str | None) -> str:
        because = f": {reason}" if reason else ""
        return f"access denied to {self._who(ref)} (HTTP {status}{because})"

    def _who(self, ref: ImageReference) -> str:
        # Which kind of credential failed helps; the username is left out with the rest of it.
        credential = self._credentials.lookup(ref.registry)
        if credential is None:
            return "anonymous client"
        return "the configured identity token" if credential.identity_token else "the configured credentials"

    # -- transport ---------------------------------------------------------------------

    def _base_url(self, registry: str) -> str:
        scheme = "http" if registry in self._insecure else "https"
        return f"{scheme}://{_API_HOSTS.get(registry, registry)}"

    def _send(self, ref: ImageReference, method: str, url: str, headers: dict[str, str],
              body: Body = None, *, stream: bool = False) -> urllib3.BaseHTTPResponse:
        """One request, retried through throttling, 5xx answers and connection failures (a streamed
        body cannot be sent twice: that request is tried once). ``stream``: the body is read by the caller."""
        self._wait_out_backoff(ref)
        headers = {"User-Agent": self._user_agent, **headers}
        host = urlsplit(url).netloc
        pool = self._pool_for(ref, url)
        route = f"{host} through the proxy {pool.proxy}" if isinstance(pool, urllib3.ProxyManager) else host
        attempt = 0
        while True:
            with self._lock:
                self._requests[host] += 1
            try:
                response = pool.request(method, url, headers=headers, body=body, redirect=False,
                                        preload_content=not stream)
            except urllib3.exceptions.HTTPError as error:
                # A connection cut during the handshake is an outage like any other, not a certificate problem.
                if isinstance(error, urllib3.exceptions.SSLError) and "EOF" not in _reason(error):
                    raise RegistryError(ref, f"TLS failure talking to {host}: {_reason(error)} "
                                        "(is the registry's CA in ca_bundle or certs_dir?)") from None
                delay = backoff_delay(attempt, None, cap=self._max_backoff)
                if not self._should_retry(attempt, delay) or not _replayable(body):
                    raise RegistryUnavailable(ref, f"no answer from {route} after "
                                              f"{_attempts(attempt)}: {_reason(error)}") from None
            else:
                if host == _API_HOSTS.get(ref.registry, ref.registry):
                    self._record_rate_limits(ref.registry, response.headers)
                if response.status not in RETRYABLE_STATUSES:
                    return response
                response.drain_conn()
                if not _replayable(body):
                    raise RegistryUnavailable(ref, f"HTTP {response.status} to a {method} of a streamed body")
                delay = self._throttle(ref, response, attempt)
            self._sleep(delay)
            attempt += 1

    def _pool_for(self, ref: ImageReference, url: str) -> urllib3.PoolManager:
        """Direct connections, or those through the proxy for ``url``: https is tunnelled (CONNECT), so
        the registry's TLS is verified end to end and the proxy sees only the host and port."""
        try:
            proxy = self._proxies.proxy_for(url)
        except ValueError as error:
            raise RegistryError(ref, str(error)) from None
        if proxy is None:
            return self._pool
        with self._lock:
            pool = self._proxy_pools.get(proxy)
            if pool is None:
                pool = urllib3.ProxyManager(
                    proxy.url, proxy_headers={"User-Agent": self._user_agent, **proxy.headers()},
                    proxy_ssl_context=self._pool_options["ssl_context"], **self._pool_options)
                self._proxy_pools[proxy] = pool
        return pool

    def _throttle(self, ref: ImageReference, response: urllib3.BaseHTTPResponse, attempt: int) -> float:
        """The delay before retrying a 429/5xx answer; raises when retrying is pointless."""
        now = time.time()
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        delay = backoff_delay(attempt, retry_after, cap=self._max_backoff)
        if response.status in THROTTLING_STATUSES:
            with self._lock:
                state = self._rate_limits.get(ref.registry, RateLimitState())
                self._rate_limits[ref.registry] = replace(state, backoff_until=now + delay)
        if self._should_retry(attempt, delay):
            return delay
        detail = f"HTTP {response.status} after {_attempts(attempt)}"
        if retry_after is not None:
            detail += f"; the registry asks to wait {retry_after:.0f}s"
        # A 503 that says when to come back is throttling too; without Retry-After it is an outage.
        if response.status == 429 or retry_after is not None:
            raise RateLimited(ref, detail, delay)
        raise RegistryUnavailable(ref, detail)

    def _should_retry(self, attempt: int, delay: float) -> bool:
        return should_retry(attempt, delay, max_retries=self._max_retries, max_backoff=self._max_backoff)

    def _wait_out_backoff(self, ref: ImageReference) -> None:
        """Honour a backoff another request set for this registry instead of hammering it."""
        wait = (self.rate_limit_state(ref.registry).backoff_until or 0.0) - time.time()
        if wait > self._max_backoff:
            raise RateLimited(ref, f"backing off for another {wait:.0f}s", wait)
        if wait > 0:
            self._sleep(wait)

    def _record_rate_limits(self, registry: str, headers: Mapping[str, str]) -> None:
        limit, window = parse_rate_limit(headers.get("RateLimit-Limit"))
        remaining, remaining_window = parse_rate_limit(headers.get("RateLimit-Remaining"))
        if limit is None and remaining is None:
            return
        with self._lock:
            state = self._rate_limits.get(registry, RateLimitState())
            self._rate_limits[registry] = replace(
                state, limit=limit, remaining=remaining, window=window or remaining_window)


def _replayable(body: Body) -> bool:
    return body is None or isinstance(body, (str, bytes))


def _manifest_info(ref: ImageReference, headers: Mapping[str, str]) -> ManifestInfo:
    digest = headers.get("Docker-Content-Digest")
    if not digest:
        # Computing it would need a GET, which registries like Docker Hub count as a pull.
        raise RegistryError(ref, "the HEAD answer has no Docker-Content-Digest header")
    problem = digest_problem(digest)
    if problem is not None:
        raise RegistryError(ref, f"the registry sent an invalid digest: {problem}")
    if ref.digest is not None and digest != ref.digest:
        raise RegistryError(ref, f"the registry answered with digest {digest}")
    media_type = headers.get("Content-Type", "").partition(";")[0].strip()
    size = headers.get("Content-Length", "")
    if not media_type or not _DIGITS_RE.fullmatch(size):
        raise RegistryError(ref, "the HEAD answer lacks Content-Type or Content-Length")
    return ManifestInfo(digest, media_type, int(size))


def _listed(ref: ImageReference, body: bytes, field: str, what: str) -> list[Any]:
    """The list ``field`` of the JSON object ``body`` (empty when absent or null), the answer ``what`` names."""
    try:
        listed = json.loads(body).get(field) or []
    except (ValueError, AttributeError):
        raise RegistryError(ref, f"the {what} is not a JSON object") from None
    if not isinstance(listed, list):
        raise RegistryError(ref, f"the {what}'s {field} are not a list")
    return listed


def _is_descriptor(entry: object) -> bool:
    """A descriptor whose digest may go into URL paths and whose size is a byte count."""
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        return False
    size = entry.get("size")
    return digest_problem(entry["digest"]) is None and isinstance(size, int) and not isinstance(size, bool)


def _sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _token_from(ref: ImageReference, host: str, body: bytes) -> tuple[str, float]:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    token = document.get("token") or document.get("access_token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError(ref, f"token service {host} answered without a token")
    return token, token_lifetime(document.get("expires_in"))


def _preferred_challenge(header: str) -> Challenge | None:
    """The Bearer challenge if offered (it works for anonymous pulls too), else Basic."""
    challenges = {challenge.scheme: challenge for challenge in reversed(parse_challenges(header))}
    return challenges.get("bearer") or challenges.get("basic")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _with_auth(headers: dict[str, str], authorization: str | None) -> dict[str, str]:
    return {**headers, "Authorization": authorization} if authorization else headers


def _basic(credential: Credential) -> str:
    return "Basic " + basic_token(credential.username, credential.password)


def _attempts(attempt: int) -> str:
    return "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"


def _reason(error: Exception) -> str:
    """The cause of a urllib3 failure without its connection-object prefix."""
    text = str(getattr(error, "reason", None) or error)
    return text.split("): ", 1)[-1]
