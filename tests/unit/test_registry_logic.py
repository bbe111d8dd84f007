"""RegistryClient logic without a registry: header parsing, backoff decisions, and the request loop
driven by responses injected at the urllib3 level (429s cannot be had from docker-registry)."""
from __future__ import annotations

import base64
import email.utils
import json
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import Credential, CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    DEFAULT_USER_AGENT,
    MANIFEST_MEDIA_TYPES,
    Challenge,
    ManifestInfo,
    RateLimited,
    RateLimitState,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    backoff_delay,
    parse_challenges,
    parse_rate_limit,
    parse_retry_after,
    should_retry,
    token_lifetime,
)

REGISTRY = "registry.example.com"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
PASSWORD = "pa55:word-never-shown"
BEARER = f'Bearer realm="https://auth.example.com/token",service="{REGISTRY}",scope="repository:app:pull"'
NGINX = parse_reference(f"{REGISTRY}/library/nginx:1.27")


# -- WWW-Authenticate ------------------------------------------------------------------------------


def test_basic_challenge():
    assert parse_challenges('Basic realm="image-clone-backup"') == [
        Challenge("basic", {"realm": "image-clone-backup"})]


def test_bearer_challenge_with_several_params():
    assert parse_challenges(BEARER) == [Challenge("bearer", {
        "realm": "https://auth.example.com/token", "service": REGISTRY, "scope": "repository:app:pull"})]


def test_quoted_values_keep_commas_equals_and_escapes():
    header = r'Bearer realm="https://a.example/t?x=1,y=2", scope="repository:a:pull,push", error="say \"hi\""'
    assert parse_challenges(header)[0].params == {
        "realm": "https://a.example/t?x=1,y=2", "scope": "repository:a:pull,push", "error": 'say "hi"'}


def test_several_challenges_in_one_header_and_case_insensitive_names():
    header = 'BEARER Realm="https://a.example/t",Service=reg , basic REALM=x, Negotiate'
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "https://a.example/t", "service": "reg"}),
        Challenge("basic", {"realm": "x"}),
        Challenge("negotiate", {}),
    ]


def test_token_values_and_empty_headers():
    assert parse_challenges("Basic realm=registry") == [Challenge("basic", {"realm": "registry"})]
    assert parse_challenges("") == []
    assert parse_challenges("  ,  ") == []


@given(st.text(max_size=200))
def test_challenge_parsing_never_raises(header):
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()


# -- rate limit headers, Retry-After, backoff ---------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("100;w=21600", (100, 21600)),
    ("76;w=21600", (76, 21600)),
    (" 5 ; W = 60 ", (5, 60)),
    ("100", (100, None)),
    ("10, 10;w=1, 50;w=60", (10, None)),
    ("100;w=soon", (100, None)),
    ("lots", (None, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_rate_limit_headers(value, expected):
    assert parse_rate_limit(value) == expected


def test_retry_after_in_seconds_or_as_an_http_date():
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    for invalid in (None, "", "-5", "1.5", "soon", "Mon, 99 Foo 2026"):
        assert parse_retry_after(invalid, now) is None


def test_backoff_is_exponential_capped_and_jittered():
    assert [backoff_delay(attempt, None, jitter=0.0) for attempt in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert [backoff_delay(attempt, None, jitter=0.999) for attempt in range(2)] == pytest.approx([0.5, 1.0], 0.01)
    assert backoff_delay(20, None, cap=30, jitter=0.0) == 15.0
    assert backoff_delay(20, None, cap=30, jitter=0.999) <= 30.0
    delays = {backoff_delay(3, None) for _ in range(50)}
    assert len(delays) > 1 and all(2.0 <= delay <= 4.0 for delay in delays)


def test_retry_after_wins_over_backoff_uncapped():
    assert backoff_delay(0, 7.0) == 7.0
    assert backoff_delay(3, 21600.0, cap=30) == 21600.0


def test_retry_decisions():
    assert should_retry(0, 1.0, max_retries=4, max_backoff=30)
    assert should_retry(3, 30.0, max_retries=4, max_backoff=30)
    assert not should_retry(4, 1.0, max_retries=4, max_backoff=30)  # retries used up
    assert not should_retry(0, 31.0, max_retries=4, max_backoff=30)  # too long to hold a thread
    assert not should_retry(0, 0.0, max_retries=0, max_backoff=30)


@pytest.mark.parametrize("expires_in, lifetime", [
    (60, 48.0), (300, 270.0), (3600, 3570.0), (None, 48.0), (0, 48.0), (-5, 48.0), ("300", 48.0), (True, 48.0),
])
def test_token_lifetime_keeps_a_margin(expires_in, lifetime):
    assert token_lifetime(expires_in) == lifetime


def test_errors_survive_pickling_and_name_registry_and_image():
    errors = (RegistryError(NGINX, "boom"), RegistryAuthError(NGINX, "no"),
              RegistryUnavailable(NGINX, "down"), RateLimited(NGINX, "slow", 5.0))
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert (copy.registry, copy.reference) == (REGISTRY, NGINX)
        assert str(error) == f"registry {REGISTRY}, image {NGINX}: {error.detail}"
    assert pickle.loads(pickle.dumps(errors[-1])).retry_after == 5.0


# -- the request loop, with responses injected into urllib3 ---------------------------------------------


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FakeTransport:
    """Stands in for the network under urllib3.PoolManager: records requests, answers via ``handler``."""

    handler: Callable[[Sent], Reply]
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def urlopen(self, pool, method, url, redirect=True, **kw):
        assert redirect is False
        request = Sent(method, url, dict(kw.get("headers") or {}), kw.get("body"))
        with self.lock:
            self.sent.append(request)
        status, headers, body = self.handler(request)
        return urllib3.HTTPResponse(body=body, headers=headers, status=status, preload_content=True)


def manifest_found(digest: str = DIGEST) -> Reply:
    return 200, {"Docker-Content-Digest": digest, "Content-Type": MANIFEST_MEDIA_TYPES[0],
                 "Content-Length": "491"}, b""


def scripted(*replies: Reply) -> Callable[[Sent], Reply]:
    remaining = list(replies)
    return lambda request: remaining.pop(0)


@pytest.fixture
def transport(monkeypatch) -> Callable[[Callable[[Sent], Reply]], FakeTransport]:
    def install(handler: Callable[[Sent], Reply]) -> FakeTransport:
        fake = FakeTransport(handler)
        monkeypatch.setattr(urllib3.PoolManager, "urlopen",
                            lambda pool, method, url, **kw: fake.urlopen(pool, method, url, **kw))
        return fake
    return install


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(sleeps: list[float], store: CredentialStore | None = None, **options) -> RegistryClient:
    return RegistryClient(store or CredentialStore(), sleep=sleeps.append, **options)


def alice() -> CredentialStore:
    return CredentialStore().with_credential(REGISTRY, Credential("alice", PASSWORD))


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def token_reply(token: str, expires_in: float | None = 300) -> Reply:
    document = {"token": token} if expires_in is None else {"access_token": token, "expires_in": expires_in}
    return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()


def test_head_sends_only_a_head_with_every_manifest_type_accepted(transport, sleeps):
    fake = transport(scripted(manifest_found()))
    info = make_client(sleeps).head_manifest(NGINX)
    assert info == ManifestInfo(DIGEST, MANIFEST_MEDIA_TYPES[0], 491)
    [request] = fake.sent
    assert (request.method, request.url) == ("HEAD", f"https://{REGISTRY}/v2/library/nginx/manifests/1.27")
    assert [media.strip() for media in request.headers["Accept"].split(",")] == list(MANIFEST_MEDIA_TYPES)
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_digest_references_are_looked_up_by_digest_and_checked(transport, sleeps):
    fake = transport(scripted(manifest_found(), manifest_found(OTHER_DIGEST)))
    client = make_client(sleeps)
    assert client.head_manifest(NGINX.with_digest(DIGEST)).digest == DIGEST
    assert fake.sent[0].url.endswith(f"/manifests/{DIGEST}")
    with pytest.raises(RegistryError, match=f"answered with digest {OTHER_DIGEST}"):
        client.head_manifest(NGINX.with_digest(DIGEST))


def test_a_missing_digest_header_is_an_error_not_a_get(transport, sleeps):
    fake = transport(scripted((200, {"Content-Type": MANIFEST_MEDIA_TYPES[1], "Content-Length": "10"}, b"")))
    with pytest.raises(RegistryError, match="no Docker-Content-Digest") as failed:
        make_client(sleeps).head_manifest(NGINX)
    assert REGISTRY in str(failed.value) and str(NGINX) in str(failed.value)
    assert [request.method for request in fake.sent] == ["HEAD"]


@pytest.mark.parametrize("headers, reason", [
    ({"Docker-Content-Digest": "sha256:short", "Content-Type": "x", "Content-Length": "1"}, "invalid digest"),
    ({"Docker-Content-Digest": DIGEST, "Content-Length": "1"}, "Content-Type or Content-Length"),
    ({"Docker-Content-Digest": DIGEST, "Content-Type": "x"}, "Content-Type or Content-Length"),
])
def test_incomplete_head_answers_are_errors(transport, sleeps, headers, reason):
    transport(scripted((200, headers, b"")))
    with pytest.raises(RegistryError, match=reason):
        make_client(sleeps).head_manifest(NGINX)


def test_absent_images_are_none_and_odd_statuses_errors(transport, sleeps):
    transport(scripted((404, {}, b""), (405, {}, b"")))
    client = make_client(sleeps)
    assert client.head_manifest(NGINX) is None
    with pytest.raises(RegistryError, match="unexpected HTTP 405"):
        client.head_manifest(NGINX)


def test_docker_hub_is_reached_at_its_api_host_and_insecure_registries_over_http(transport, sleeps):
    fake = transport(lambda request: manifest_found())
    client = make_client(sleeps, insecure_registries=frozenset({"localhost:5000"}))
    client.head_manifest(parse_reference("nginx:1.27"))
    client.head_manifest(parse_reference("localhost:5000/app:1"))
    assert [request.url.split("/v2/")[0] for request in fake.sent] == [
        "https://registry-1.docker.io", "http://localhost:5000"]


def test_references_without_tag_or_digest_are_refused(sleeps):
    with pytest.raises(ValueError, match="neither tag nor digest"):
        make_client(sleeps).head_manifest(NGINX.without_tag())


# -- authentication ---------------------------------------------------------------------------------------


def test_basic_challenge_is_answered_then_sent_up_front(transport, sleeps):
    fake = transport(scripted((401, {"WWW-Authenticate": 'Basic realm="r"'}, b""), manifest_found(),
                              manifest_found()))
    client = make_client(sleeps, alice())
    client.head_manifest(NGINX)
    client.head_manifest(NGINX.with_tag("1.28"))
    authorizations = [request.headers.get("Authorization") for request in fake.sent]
    assert authorizations == [None, basic_header("alice", PASSWORD), basic_header("alice", PASSWORD)]


def test_rejected_basic_credentials_are_not_retried_and_not_shown(transport, sleeps):
    challenge = (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")
    fake = transport(scripted(challenge, challenge))
    with pytest.raises(RegistryAuthError, match="denied to the configured credentials") as refused:
        make_client(sleeps, alice()).head_manifest(NGINX)
    assert len(fake.sent) == 2
    for text in (str(refused.value), repr(refused.value.args)):
        assert PASSWORD not in text and "alice" not in text


def bearer_registry(tokens: list[str], expires_in: float | None = 300) -> Callable[[Sent], Reply]:
    """A registry accepting ``Bearer <token>`` for any token the fake token service has handed out."""
    issued: list[str] = []

    def handle(request: Sent) -> Reply:
        if request.url.startswith("https://auth.example.com/"):
            issued.append(tokens[len(issued)])
            return token_reply(issued[-1], expires_in)
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in issued[-1:]:
            return manifest_found()
        return 401, {"WWW-Authenticate": BEARER}, b""
    return handle


def test_bearer_flow_fetches_one_token_per_scope_and_reuses_it(transport, sleeps):
    fake = transport(bearer_registry(["token-1", "token-2"]))
    client = make_client(sleeps, alice())
    for tag in ("1.27", "1.28", "1.29"):
        assert client.head_manifest(NGINX.with_tag(tag)) is not None
    client.head_manifest(parse_reference(f"{REGISTRY}/library/redis:7"))
    token_requests = [request for request in fake.sent if request.method == "GET"]
    assert [request.query for request in token_requests] == [
        {"service": [REGISTRY], "scope": ["repository:library/nginx:pull"]},
        {"service": [REGISTRY], "scope": ["repository:library/redis:pull"]},
    ]
    assert all(request.headers["Authorization"] == basic_header("alice", PASSWORD) for request in token_requests)
    # One 401 only: for redis the remembered realm gave a token before the first HEAD.
    heads = [(request.headers.get("Authorization")) for request in fake.sent if request.method == "HEAD"]
    assert heads == [None, "Bearer token-1", "Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert client.request_counts() == {REGISTRY: 5, "auth.example.com": 2}


def test_anonymous_bearer_token_requests_carry_no_authorization(transport, sleeps):
    fake = transport(bearer_registry(["anonymous-token"], expires_in=None))
    assert make_client(sleeps).head_manifest(NGINX) is not None
    assert "Authorization" not in fake.sent[1].headers


def test_expired_tokens_are_fetched_again(transport, sleeps):
    fake = transport(bearer_registry(["short-1", "short-2"], expires_in=0.1))
    client = make_client(sleeps)
    client.head_manifest(NGINX)
    time.sleep(0.1)
    client.head_manifest(NGINX)
    assert [request.headers.get("Authorization") for request in fake.sent if request.method == "HEAD"] == [
        None, "Bearer short-1", "Bearer short-2"]


def test_a_token_the_registry_stops_accepting_is_replaced_once(transport, sleeps):
    fake = transport(bearer_registry(["revoked", "fresh"]))
    client = make_client(sleeps)
    client.head_manifest(NGINX)
    refused = {"revoked"}
    original = fake.handler

    def revoking(request: Sent) -> Reply:
        if request.headers.get("Authorization") == "Bearer revoked" and refused:
            refused.clear()
            return 401, {"WWW-Authenticate": BEARER}, b""
        return original(request)
    fake.handler = revoking
    assert client.head_manifest(NGINX) is not None
    assert [request.headers.get("Authorization") for request in fake.sent if request.method == "HEAD"][-2:] == [
        "Bearer revoked", "Bearer fresh"]


def test_identity_tokens_are_exchanged_with_a_refresh_token_grant(transport, sleeps):
    fake = transport(bearer_registry(["access"]))
    store = CredentialStore().with_credential(REGISTRY, Credential(identity_token="refresh-secret"))
    make_client(sleeps, store).head_manifest(NGINX)
    exchange = fake.sent[1]
    assert exchange.method == "POST" and "Authorization" not in exchange.headers
    assert parse_qs(exchange.body) == {
        "grant_type": ["refresh_token"], "refresh_token": ["refresh-secret"], "client_id": ["image-clone"],
        "service": [REGISTRY], "scope": ["repository:library/nginx:pull"]}


def test_concurrent_checks_of_one_repository_fetch_one_token(transport, sleeps):
    issued = threading.Event()

    def slow_bearer(request: Sent) -> Reply:
        if request.url.startswith("https://auth.example.com/"):
            time.sleep(0.05)  # let every thread pile up on the same missing token
            issued.set()
            return token_reply("shared")
        if request.headers.get("Authorization") == "Bearer shared":
            return manifest_found()
        return 401, {"WWW-Authenticate": BEARER}, b""
    fake = transport(slow_bearer)
    client = make_client(sleeps)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            client.head_manifest(NGINX)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
    threads = [threading.Thread(target=check) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and issued.is_set()
    assert sum(request.method == "GET" for request in fake.sent) == 1


@pytest.mark.parametrize("reply, reason", [
    ((401, {"WWW-Authenticate": 'Basic realm="tok"'}, b'{"details": "bad"}'), "refused the configured credentials"),
    ((404, {}, b""), "answered HTTP 404"),
    ((500, {}, b""), r"HTTP 500 after 1 attempt\b"),
    ((200, {}, b'{"expires_in": 60}'), "without a token"),
    ((200, {}, b"<html>"), "without a token"),
])
def test_token_service_failures(transport, sleeps, reply, reason):
    def handle(request: Sent) -> Reply:
        if request.url.startswith("https://auth.example.com/"):
            return reply
        return 401, {"WWW-Authenticate": BEARER}, b""
    transport(handle)
    with pytest.raises(RegistryError, match=reason) as failed:
        make_client(sleeps, alice(), max_retries=0).head_manifest(NGINX)
    assert PASSWORD not in str(failed.value) and "alice" not in str(failed.value)


def test_insufficient_scope_is_reported(transport, sleeps):
    denied = BEARER + ',error="insufficient_scope"'
    transport(lambda request: token_reply("weak") if request.method == "GET"
              else (401, {"WWW-Authenticate": denied}, b""))
    with pytest.raises(RegistryAuthError, match=r"anonymous client \(HTTP 401: insufficient_scope\)") as failed:
        make_client(sleeps).head_manifest(NGINX)
    assert "weak" not in str(failed.value)


@pytest.mark.parametrize("challenge, reason", [
    ('Bearer realm="http://auth.example.com/token"', "https URL expected"),
    ('Bearer service="x"', "https URL expected"),
    ('Negotiate abc', "without a Basic or Bearer challenge"),
])
def test_unusable_challenges_are_auth_errors(transport, sleeps, challenge, reason):
    fake = transport(scripted((401, {"WWW-Authenticate": challenge}, b"")))
    with pytest.raises(RegistryAuthError, match=reason):
        make_client(sleeps, alice()).head_manifest(NGINX)
    assert len(fake.sent) == 1  # no credentials went anywhere


def test_forbidden_is_an_auth_error(transport, sleeps):
    transport(scripted((403, {}, b"")))
    with pytest.raises(RegistryAuthError, match="HTTP 403"):
        make_client(sleeps).head_manifest(NGINX)


# -- throttling, outages, rate limit state ------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_retried(transport, sleeps):
    limits = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"}
    fake = transport(scripted((429, {"Retry-After": "2", **limits}, b""), manifest_found()))
    client = make_client(sleeps)
    assert client.head_manifest(NGINX) is not None
    assert sleeps == [2.0] and len(fake.sent) == 2
    state = client.rate_limit_state(REGISTRY)
    assert (state.limit, state.remaining, state.window) == (100, 0, 21600)
    # The fake sleep took no time, so the registry's backoff is still in force.
    assert state.backoff_until == pytest.approx(time.time() + 2, abs=1)


def test_rate_limit_headers_of_successful_answers_are_kept(transport, sleeps):
    found = manifest_found()
    transport(scripted((found[0], {**found[1], "RateLimit-Limit": "100;w=21600",
                                   "RateLimit-Remaining": "76;w=21600"}, b"")))
    client = make_client(sleeps)
    assert client.rate_limit_state(REGISTRY) == RateLimitState()
    client.head_manifest(NGINX)
    assert client.rate_limit_state(REGISTRY) == RateLimitState(100, 76, 21600, None)


def test_persistent_429_backs_off_exponentially_then_raises_rate_limited(transport, sleeps):
    fake = transport(lambda request: (429, {}, b""))
    with pytest.raises(RateLimited, match="HTTP 429 after 4 attempts") as limited:
        make_client(sleeps, max_retries=3).head_manifest(NGINX)
    assert len(fake.sent) == 4 and len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.25 * 2 ** attempt <= delay <= 0.5 * 2 ** attempt
    assert 0.25 * 2 ** 3 <= limited.value.retry_after <= 0.5 * 2 ** 3, "the next backoff, which was not slept"


def test_a_retry_after_too_long_to_wait_raises_at_once_and_holds_later_requests(transport, sleeps):
    fake = transport(scripted((429, {"Retry-After": "3600"}, b"")))
    client = make_client(sleeps, max_backoff=30)
    with pytest.raises(RateLimited, match="asks to wait 3600s") as limited:
        client.head_manifest(NGINX)
    assert limited.value.retry_after == 3600 and sleeps == [] and len(fake.sent) == 1
    assert client.rate_limit_state(REGISTRY).backoff_until == pytest.approx(time.time() + 3600, abs=5)
    # Other checks against this registry do not hammer it while the backoff lasts.
    with pytest.raises(RateLimited, match="backing off"):
        client.head_manifest(NGINX.with_tag("1.28"))
    assert len(fake.sent) == 1
    assert client.rate_limit_state("other.example.com").backoff_until is None


def test_503_with_retry_after_is_throttling_without_it_an_outage(transport, sleeps):
    transport(lambda request: (503, {"Retry-After": "1"}, b""))
    with pytest.raises(RateLimited, match="HTTP 503 after 2 attempts"):
        make_client(sleeps, max_retries=1).head_manifest(NGINX)
    transport(lambda request: (503, {}, b""))
    with pytest.raises(RegistryUnavailable, match="HTTP 503 after 2 attempts"):
        make_client(sleeps, max_retries=1).head_manifest(NGINX)


def test_transient_5xx_and_connection_failures_are_retried(transport, sleeps):
    failures = [urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused"),
                urllib3.exceptions.ReadTimeoutError(None, "", "read timed out")]

    def flaky(request: Sent) -> Reply:
        if failures:
            raise failures.pop(0)
        return (502, {}, b"") if len(sleeps) == 2 else manifest_found()
    transport(flaky)
    client = make_client(sleeps)
    assert client.head_manifest(NGINX) is not None
    assert len(sleeps) == 3
    assert client.rate_limit_state(REGISTRY).backoff_until is None  # only 429/503 throttle the registry


def test_persistent_connection_failures_are_unavailable(transport, sleeps):
    def refuse(request: Sent) -> Reply:
        raise urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused")
    transport(refuse)
    with pytest.raises(RegistryUnavailable, match="no answer from .* after 3 attempts: .*refused"):
        make_client(sleeps, max_retries=2).head_manifest(NGINX)


def test_tls_failures_are_not_retried(transport, sleeps):
    def untrusted(request: Sent) -> Reply:
        raise urllib3.exceptions.SSLError("certificate verify failed")
    fake = transport(untrusted)
    with pytest.raises(RegistryError, match="TLS failure .* certificate verify failed") as failed:
        make_client(sleeps).head_manifest(NGINX)
    assert type(failed.value) is RegistryError and len(fake.sent) == 1 and sleeps == []


def test_ca_files_must_exist(tmp_path):
    with pytest.raises(ValueError, match="cannot load CA certificates from .*missing.crt"):
        RegistryClient(CredentialStore(), ca_bundle=tmp_path / "missing.crt")
    with pytest.raises(ValueError, match="is not a directory"):
        RegistryClient(CredentialStore(), certs_dir=tmp_path / "nowhere")
    (tmp_path / "bad.crt").write_text("not a certificate")
    with pytest.raises(ValueError, match="bad.crt"):
        RegistryClient(CredentialStore(), certs_dir=tmp_path)
