"""RegistryClient against real registries: the lab's two docker-registry 2.8 and a token-auth one."""
from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    Credential,
    CredentialStore,
    write_authfile,
)
from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)
from lab.lab import http_status, parse_access_log
from lab.pki import CertificateAuthority
from lab.processes import Daemons, free_port
from lab.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
# Other suites delete this seed on purpose (an upstream image that disappears).
# Tags the demo deletes upstream: a seed may lack them.
VANISHING = ("acme/vanishing:1.0", "runnable/vanishing:1.0")
MISSING_DIGEST = "sha256:" + "0" * 64
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/[0-9.]+" (?P<status>\d{3}) ')


@pytest.fixture(scope="module")
def client(lab) -> Iterator[RegistryClient]:
    """A client that trusts the lab CA and holds the backup registry's credentials."""
    with RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir) as instance:
        yield instance


def ref(registry: str, name: str):
    return parse_reference(f"{registry}/{name}")


def access_log(path: Path, user_agent: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of every /v2/ request that ``user_agent`` made, in order."""
    lines = path.read_text(errors="replace").splitlines()
    return [(match["method"], match["path"], int(match["status"]))
            for line in lines if line.endswith(f'"{user_agent}"') and (match := _ACCESS_LINE.search(line))]


# -- the lab's registries ------------------------------------------------------------------------


def test_every_seed_exists_with_its_digest(lab, client):
    for name, digest in lab.config.seeds.items():
        info = client.head_manifest(ref(lab.config.source_registry, name))
        if name in VANISHING and info is None:
            continue
        assert info is not None, name
        assert info.digest == digest, name
        assert info.size > 0


def test_media_types_tell_an_index_from_a_manifest(lab, client):
    nginx = client.head_manifest(ref(lab.config.source_registry, "library/nginx:1.27"))
    busybox = client.head_manifest(ref(lab.config.source_registry, "library/busybox:1.36"))
    assert nginx.media_type == "application/vnd.oci.image.index.v1+json"
    assert busybox.media_type == "application/vnd.oci.image.manifest.v1+json"


def test_missing_tag_repository_and_digest_are_none(lab, client):
    source = lab.config.source_registry
    assert client.head_manifest(ref(source, "library/nginx:no-such-tag")) is None
    assert client.head_manifest(ref(source, "nobody/nothing:1")) is None
    assert client.head_manifest(ref(source, f"library/nginx@{MISSING_DIGEST}")) is None


def test_head_by_digest_returns_that_digest(lab, client):
    digest = lab.config.seeds["library/postgres:16"]
    info = client.head_manifest(ref(lab.config.source_registry, f"library/postgres:16@{digest}"))
    assert info is not None and info.digest == digest


def test_backup_registry_takes_basic_auth_and_sends_it_up_front(lab, client):
    backup = lab.config.backup_registry
    user_agent = f"image-clone-test/{secrets.token_hex(4)}"
    with RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir,
                        user_agent=user_agent) as fresh:
        assert fresh.head_manifest(ref(backup, "imageclone-test/absent:1")) is None
        assert fresh.head_manifest(ref(backup, "imageclone-test/absent:2")) is None
    statuses = [status for _, _, status in access_log(lab.daemons.log_file("registry-backup"), user_agent)]
    # One challenge, then the remembered Basic scheme goes with every request.
    assert statuses == [401, 404, 404]


def test_wrong_password_is_an_auth_error_that_hides_the_password(lab):
    password = "wrong-" + secrets.token_urlsafe(12)
    store = CredentialStore().with_credential(lab.config.backup_registry, Credential("imageclone", password))
    with RegistryClient(store, certs_dir=lab.certs_dir) as wrong:
        with pytest.raises(RegistryAuthError) as refused:
            wrong.head_manifest(ref(lab.config.backup_registry, "library/nginx:1.27"))
    message = str(refused.value)
    assert lab.config.backup_registry in message and "library/nginx:1.27" in message
    for text in (message, repr(refused.value.args)):
        assert password not in text and "imageclone" not in text


def test_no_credentials_for_a_basic_registry_is_an_auth_error(lab):
    with RegistryClient(CredentialStore(), certs_dir=lab.certs_dir) as anonymous:
        with pytest.raises(RegistryAuthError, match="no username/password configured"):
            anonymous.head_manifest(ref(lab.config.backup_registry, "library/nginx:1.27"))


def test_tls_is_verified_against_the_given_ca_only(lab):
    target = ref(lab.config.source_registry, "library/nginx:1.27")
    with RegistryClient(CredentialStore()) as untrusting:
        with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED") as failed:
            untrusting.head_manifest(target)
    assert not isinstance(failed.value, RegistryUnavailable)  # a configuration problem: no retries
    assert "ca_bundle or certs_dir" in str(failed.value)
    with RegistryClient(CredentialStore(), ca_bundle=lab.ca_cert()) as trusting:
        assert trusting.head_manifest(target) is not None


def test_unreachable_registry_is_unavailable_after_retries(lab):
    port = free_port()
    with RegistryClient(CredentialStore(), certs_dir=lab.certs_dir, max_retries=1) as lonely:
        with pytest.raises(RegistryUnavailable, match="after 2 attempts"):
            lonely.head_manifest(ref(f"127.0.0.1:{port}", "library/nginx:1.27"))
        assert lonely.request_counts() == {f"127.0.0.1:{port}": 2}


def test_a_batch_of_checks_only_ever_heads_manifests(lab):
    user_agent = f"image-clone-test/{secrets.token_hex(4)}"
    source, backup = lab.config.source_registry, lab.config.backup_registry
    names = [*lab.config.seeds, "library/nginx:absent"]
    with RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir,
                        user_agent=user_agent) as batch:
        for name in names:
            batch.head_manifest(ref(source, name))
            batch.head_manifest(ref(backup, name))
        assert batch.request_counts() == {source: len(names), backup: len(names) + 1}
    for component in ("registry-source", "registry-backup"):
        requests = access_log(lab.daemons.log_file(component), user_agent)
        assert requests, component
        assert {method for method, _, _ in requests} == {"HEAD"}, component
        assert all("/manifests/" in path for _, path, _ in requests), component


def test_one_client_serves_sixteen_threads(lab):
    source, backup = lab.config.source_registry, lab.config.backup_registry
    stable = {name: digest for name, digest in lab.config.seeds.items() if name not in VANISHING}
    targets = [ref(registry, name) for name in stable for registry in (source, backup)] * 8
    with RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir) as shared:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(shared.head_manifest, targets))
    for target, info in zip(targets, answers, strict=True):
        if target.registry == source:
            assert info is not None and info.digest == stable[f"{target.path}:{target.tag}"]


# -- a third registry with bearer-token auth -------------------------------------------------------


@dataclass
class TokenLab:
    registry: str
    token_log: Path
    username: str
    password: str
    refresh_token: str
    registry_log: Path

    def token_lines(self) -> list[str]:
        return [line for line in self.token_log.read_text().splitlines() if line.startswith("token ")]

    def store(self, **entry: str) -> CredentialStore:
        return CredentialStore.from_mapping({self.registry: entry})


@pytest.fixture(scope="module")
def token_lab(lab, tmp_path_factory) -> Iterator[TokenLab]:
    """docker-registry 2.8 with ``auth: token`` plus lab/token_server.py, both on loopback TLS.

    ``library/busybox`` is public (anonymous pull), ``acme/private`` needs
    credentials; both are copied in from the source registry with skopeo.
    """
    state = tmp_path_factory.mktemp("token-lab")
    ca = CertificateAuthority(lab.state / "pki")
    tls = ca.issue("token-server", "lab-token-server", hosts=("127.0.0.1", "localhost"))
    signer = ca.issue("token-signer", "lab token signer", client=True)
    registry_port, token_port = free_port(), free_port()
    service, issuer = "image-clone-token-registry", "image-clone-lab-token-server"
    user, password, refresh_token = "alice", secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    users = state / "users.json"
    users.write_text(json.dumps({"users": {user: password}, "refresh_tokens": {refresh_token: user}}))
    users.chmod(0o600)

    daemons = Daemons(state)
    daemons.start("token-server", [
        sys.executable, "-m", "lab.token_server", f"--port={token_port}",
        f"--tls-cert={tls.cert}", f"--tls-key={tls.key}",
        f"--signing-cert={signer.cert}", f"--signing-key={signer.key}",
        f"--issuer={issuer}", f"--service={service}", f"--users={users}", "--public=library/busybox",
    ], env={**os.environ, "PYTHONPATH": str(REPO)})
    registry_config = state / "registry.yml"
    registry_config.write_text(json.dumps({  # JSON is YAML
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(state / "data")}},
        "http": {"addr": f"127.0.0.1:{registry_port}", "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(lab.pki_dir / "registry.crt"),
                         "key": str(lab.pki_dir / "registry.key")}},
        "auth": {"token": {"realm": f"https://127.0.0.1:{token_port}/token", "service": service,
                           "issuer": issuer, "rootcertbundle": str(signer.cert)}},
    }))
    daemons.start("registry-token", ["docker-registry", "serve", str(registry_config)])
    try:
        context = ssl.create_default_context(cafile=str(lab.ca_cert()))
        wait_for(lambda: http_status(f"https://127.0.0.1:{token_port}/token?service={service}", context) == 200,
                 "the token server to answer", 30, explain=lambda: daemons.log_tail("token-server"))
        wait_for(lambda: http_status(f"https://127.0.0.1:{registry_port}/v2/", context) == 401,
                 "the token registry to answer", 30, explain=lambda: daemons.log_tail("registry-token"))
        registry = f"127.0.0.1:{registry_port}"
        pusher = CredentialStore().with_credential(registry, Credential(user, password))
        # An on-disk auth file: lab.skopeo's child cannot see the engine's in-memory one.
        private_dir = state / "pusher"
        private_dir.mkdir(mode=0o700)
        authfile = write_authfile(pusher, [registry], private_dir)
        for source, destination in (("library/busybox:1.36", "library/busybox:1.36"),
                                    ("library/redis:7.2", "acme/private:7.2")):
            lab.skopeo("copy", "--all", "--preserve-digests", f"--src-cert-dir={lab.certs_dir}",
                       f"--dest-cert-dir={lab.certs_dir}", f"--dest-authfile={authfile}",
                       f"docker://{lab.source_image(source)}", f"docker://{registry}/{destination}")
        yield TokenLab(registry, daemons.log_file("token-server"), user, password, refresh_token,
                       daemons.log_file("registry-token"))
    finally:
        daemons.stop("registry-token")
        daemons.stop("token-server")


def test_bearer_anonymous_pull_fetches_one_token_and_reuses_it(lab, token_lab):
    busybox = ref(token_lab.registry, "library/busybox:1.36")
    before = len(token_lab.token_lines())
    with RegistryClient(CredentialStore(), certs_dir=lab.certs_dir) as anonymous:
        for _ in range(3):
            info = anonymous.head_manifest(busybox)
            assert info is not None and info.digest == lab.config.seeds["library/busybox:1.36"]
        counts = anonymous.request_counts()
    fetched = token_lab.token_lines()[before:]
    assert len(fetched) == 1 and "user=- " in fetched[0] and "granted=library/busybox:pull" in fetched[0]
    # 401 challenge, then three HEADs with the cached token; one token request.
    assert counts[token_lab.registry] == 4
    assert sum(counts.values()) == 5


def test_bearer_with_credentials_reaches_a_private_repository(lab, token_lab):
    private = ref(token_lab.registry, "acme/private:7.2")
    before = len(token_lab.token_lines())
    with RegistryClient(token_lab.store(username=token_lab.username, password=token_lab.password),
                        certs_dir=lab.certs_dir) as alice:
        assert alice.head_manifest(private).digest == lab.config.seeds["library/redis:7.2"]
        assert alice.head_manifest(private.with_tag("missing")) is None
        # A new repository: the remembered Bearer scheme fetches its token before the first HEAD.
        assert alice.head_manifest(ref(token_lab.registry, "library/busybox:1.36")) is not None
        counts = alice.request_counts()
    fetched = token_lab.token_lines()[before:]
    assert [line.split(" scope=")[0] for line in fetched] == ["token grant=basic user=alice"] * 2
    assert counts[token_lab.registry] == 4  # one 401, then every HEAD authorized up front


def test_bearer_identity_token_is_exchanged_by_refresh_grant(lab, token_lab):
    before = len(token_lab.token_lines())
    with RegistryClient(token_lab.store(identitytoken=token_lab.refresh_token), certs_dir=lab.certs_dir) as sso:
        assert sso.head_manifest(ref(token_lab.registry, "acme/private:7.2")) is not None
    assert token_lab.token_lines()[before:][0].startswith("token grant=refresh_token user=alice ")


def test_bearer_anonymous_on_a_private_repository_is_an_auth_error(lab, token_lab):
    with RegistryClient(CredentialStore(), certs_dir=lab.certs_dir) as anonymous:
        with pytest.raises(RegistryAuthError, match="insufficient_scope"):
            anonymous.head_manifest(ref(token_lab.registry, "acme/private:7.2"))


def test_bearer_wrong_password_is_refused_by_the_token_service(lab, token_lab):
    password = "not-" + token_lab.password
    with RegistryClient(token_lab.store(username=token_lab.username, password=password),
                        certs_dir=lab.certs_dir) as wrong:
        with pytest.raises(RegistryAuthError, match="token service .* refused the configured credentials") as refused:
            wrong.head_manifest(ref(token_lab.registry, "acme/private:7.2"))
    assert password not in str(refused.value) and token_lab.username not in str(refused.value)


def test_a_client_with_other_credentials_shares_connections_but_never_a_token(lab, token_lab):
    private = ref(token_lab.registry, "acme/private:7.2")
    with RegistryClient(CredentialStore(), certs_dir=lab.certs_dir) as anonymous:
        alice = anonymous.with_credentials(token_lab.store(username=token_lab.username, password=token_lab.password))
        assert alice.head_manifest(private) is not None
        with pytest.raises(RegistryAuthError, match="insufficient_scope"):
            anonymous.head_manifest(private)
        assert alice.head_manifest(private) is not None
        assert anonymous.request_counts() == alice.request_counts()


def test_the_native_copier_pushes_into_a_bearer_registry_with_a_push_scoped_token(lab, token_lab):
    source = parse_reference(lab.source_image("library/nginx:1.27"))
    destination = ref(token_lab.registry, "acme/copied:1.27")
    store = token_lab.store(username=token_lab.username, password=token_lab.password)
    before = len(token_lab.token_lines())
    with RegistryClient(store, certs_dir=lab.certs_dir) as client:
        NativeCopier(client).copy(source, destination, store)
        assert client.head_manifest(destination).digest == lab.config.seeds["library/nginx:1.27"]
    scopes = [line.split(" scope=")[1].split()[0] for line in token_lab.token_lines()[before:]]
    assert "repository:acme/copied:pull,push" in scopes, scopes


def test_the_native_copier_mounts_a_shared_blob_with_a_token_for_both_repositories(lab, token_lab):
    store = token_lab.store(username=token_lab.username, password=token_lab.password)
    run = uuid.uuid4().hex[:8]
    before = len(token_lab.token_lines())
    with RegistryClient(store, certs_dir=lab.certs_dir) as client:
        copier = NativeCopier(client)
        for seed, name in (("library/nginx:1.27", "one"), ("library/redis:7.2", "two")):  # both on one base
            copier.copy(parse_reference(lab.source_image(seed)), ref(token_lab.registry, f"{run}/{name}:1"), store)
    mounts = [r for r in parse_access_log(token_lab.registry_log.read_text())
              if r.method == "POST" and r.path.startswith(f"/v2/{run}/two/blobs/uploads/?") and "mount=" in r.path]
    assert [r.status for r in mounts] == [201], mounts
    scopes = [line.split(" scope=")[1].split(" granted=")[0] for line in token_lab.token_lines()[before:]]
    assert f"repository:{run}/two:pull,push repository:{run}/one:pull" in scopes, scopes
