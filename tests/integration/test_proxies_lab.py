"""Every connection image-clone makes follows one proxy rule (docs/proxies.md), as a real proxy sees it.

A forward proxy on loopback (``lab/forward_proxy.py``, with credentials) records each connection it
carries: method, target and the client's User-Agent (``image-clone`` for the engine's own requests,
Go's default for skopeo's). The private lab's API server and registries are named by names only
that proxy resolves (``lab.lab.PROXIED_NAMES``), so a client either went through the proxy and got
an answer, or went direct and could not even resolve the name: which one it did shows on both sides.
"""
from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path

import pytest
import yaml
from builders import BUSYBOX, NGINX, manifest, pod_spec
from faults_support import isolated_lab, new_namespace
from test_controller_harness import rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.copier import CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kube import (
    KubeApi,
    KubeApiError,
    Resource,
    new_api_client,
)
from ansible_collections.imageclone.backup.plugins.module_utils.proxies import ProxyEnvironment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient, RegistryError
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.forward_proxy import ForwardProxy, ProxiedConnection
from lab.lab import BACKUP_USER, PROXIED_NAMES, Lab
from lab.waiting import wait_for

NAMESPACE = Resource("Namespace", "v1", "namespaces", namespaced=False)


@pytest.fixture(scope="module")
def iso(request, tmp_path_factory) -> Lab:
    return isolated_lab(request, tmp_path_factory)


@pytest.fixture
def proxy():
    credentials = ("proxy-user", secrets.token_urlsafe(16))
    with ForwardProxy({name: "127.0.0.1" for name in PROXIED_NAMES.values()}, credentials) as forward:
        yield forward


class NamedLab:
    """The lab's images by the source registry's proxied name, for ``pod_spec``."""

    def __init__(self, lab: Lab) -> None:
        self.source = lab.config.proxied_address("registry-source")

    def source_image(self, ref_name: str) -> str:
        return f"{self.source}/{ref_name}"


def named_authfile(lab: Lab, path: Path) -> Path:
    """The backup registry's login, filed under its proxied name."""
    token = base64.b64encode(f"{BACKUP_USER}:{lab.backup_password()}".encode()).decode()
    path.write_text(json.dumps({"auths": {lab.config.proxied_address("registry-backup"): {"auth": token}}}))
    path.chmod(0o600)
    return path


def named_kubeconfig(lab: Lab, path: Path) -> Path:
    """The admin kubeconfig with the API server by its proxied name."""
    document = yaml.safe_load(lab.kubeconfig.read_text())
    for cluster in document["clusters"]:
        cluster["cluster"]["server"] = f"https://{lab.config.proxied_address('kube-apiserver')}"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def client_of(connection: ProxiedConnection) -> str:
    if connection.user_agent.startswith("image-clone"):
        return "image-clone"
    if connection.user_agent.startswith("Go-http-client/"):
        return "skopeo"
    return connection.user_agent or "unnamed"


@pytest.mark.parametrize("copier", ["native", "skopeo"])
def test_the_controller_sends_exactly_its_registry_connections_through_the_proxy(iso, proxy, tmp_path, copier):
    """The reported case: HTTPS_PROXY set, NO_PROXY=127.0.0.1 and the API server at 127.0.0.1. The
    API server's connections stay direct; the engine's requests and the copies (the engine's own, or
    skopeo's), to registries named in the workload and the backup repository, all go through the proxy."""
    admin = iso.admin_api()
    namespace = new_namespace(iso, "proxied")
    admin.create(KINDS["Deployment"], namespace, manifest("Deployment", "app", pod_spec(NamedLab(iso), "Deployment")))
    source, backup = (iso.config.proxied_address(name) for name in ("registry-source", "registry-backup"))
    repository = f"{backup}/proxies/{uuid.uuid4().hex[:12]}"
    env = {"HTTPS_PROXY": proxy.url(), "NO_PROXY": "127.0.0.1"}
    authfile = named_authfile(iso, tmp_path / "auth.json")
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace, repository=repository,
                           authfile=False, args=[f"--backupAuthFile={authfile}", f"--copier={copier}"],
                           env=env) as controller:
        controller.wait_leader_ready()
        wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(KINDS["Deployment"], namespace, "app")),
                   "the Deployment rewritten to its backups", timeout=90)
        assert controller.stored_writes(), "the rewrite went to the API server, which audited it"
    connections = proxy.connections
    clients = {"image-clone", "skopeo"} if copier == "skopeo" else {"image-clone"}
    assert {(c.method, c.target, client_of(c)) for c in connections} == {
        ("CONNECT", registry, client) for registry in (source, backup) for client in clients}, connections
    assert {c.status for c in connections} == {200}, "every client sent the proxy's credentials"
    api_server = f"127.0.0.1:{iso.config.ports['kube-apiserver']}"
    assert not [c for c in connections if c.target == api_server]
    assert proxy.credentials[1] not in controller.log_text()


# NO_PROXY (ports filled in from the lab) -> the clients that go direct; the others go through the proxy.
ROUTES = [
    ("", set()),
    ("127.0.0.0/8,::1", set()),  # a CIDR or an IP matches IP literals only, never a name
    ("kube.lab.test:1,source.lab.test:1,backup.lab.test:1", set()),  # another port than theirs
    (".lab.test", {"api", "engine", "skopeo"}),
    ("*", {"api", "engine", "skopeo"}),
    ("kube.lab.test:{kube-apiserver}", {"api"}),
    ("source.lab.test:{registry-source},backup.lab.test", {"engine", "skopeo"}),
]
# How each client shows in the proxy's record: (User-Agent as client_of names it, host it asked for).
SEEN_AS = {"api": ("unnamed", "kube.lab.test"), "engine": ("image-clone", "source.lab.test"),
           "skopeo": ("skopeo", "source.lab.test")}


@pytest.mark.parametrize(("no_proxy", "direct"), ROUTES, ids=[entry for entry, _ in ROUTES])
def test_no_proxy_decides_alike_for_the_api_server_the_registries_and_skopeo(iso, proxy, tmp_path, no_proxy, direct):
    environ = {"https_proxy": proxy.url(), "no_proxy": no_proxy.format_map(iso.config.ports)}
    proxies = ProxyEnvironment.from_environ(environ)
    source, backup = (iso.config.proxied_address(name) for name in ("registry-source", "registry-backup"))
    reached = {}

    api = KubeApi(new_api_client({"kubeconfig": str(named_kubeconfig(iso, tmp_path / "kubeconfig"))}, environ))
    try:
        reached["api"] = bool(api.get(NAMESPACE, None, "default"))
    except KubeApiError as error:
        reached["api"] = False
        assert "kube.lab.test" in str(error) and proxy.credentials[1] not in str(error)

    registry = RegistryClient(CredentialStore(), certs_dir=iso.certs_dir, max_retries=0, proxies=proxies)
    try:
        reached["engine"] = registry.head_manifest(parse_reference(f"{source}/{NGINX}")) is not None
    except RegistryError as error:
        reached["engine"] = False
        assert proxy.credentials[1] not in str(error)

    destination = parse_reference(f"{backup}/proxies/{uuid.uuid4().hex[:12]}:1.36")
    credentials = CredentialStore.from_authfile(str(named_authfile(iso, tmp_path / "auth.json")))
    try:
        Skopeo(certs_dir=iso.certs_dir, retry_times=0, proxies=proxies).copy(
            parse_reference(f"{source}/{BUSYBOX}"), destination, credentials)
        reached["skopeo"] = True
    except CopyError as error:
        reached["skopeo"] = False
        assert proxy.credentials[1] not in str(error)

    assert {name for name, answered in reached.items() if not answered} == direct, (reached, proxy.connections)
    carried = {(client_of(c), c.target.rpartition(":")[0]) for c in proxy.connections if c.status == 200}
    # skopeo reaches the backup registry too when it goes through the proxy; nothing else is carried.
    expected = {SEEN_AS[name] for name in reached if name not in direct}
    if "skopeo" not in direct:
        expected.add(("skopeo", "backup.lab.test"))
    assert carried == expected, proxy.connections
    assert {c.status for c in proxy.connections} <= {200}
