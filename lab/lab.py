"""The local lab: a one-node Kubernetes cluster and two registries, on loopback.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler make the control
plane; containerd and a kubelet make the node (see ``lab/node.py``); two TLS
registries stand in for a public upstream and the backup.

State lives in one directory (``$IMAGECLONE_LAB_DIR``, default ``<repo>/.lab``):
certificates, kubeconfigs, etcd data, registry storage, logs and ``lab.json``,
which records the ports and the digests of the seeded images.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from lab.binaries import ensure_binaries, kubernetes_version
from lab.images import RUNNABLE_SEEDS, SEED_IMAGES, ImageSpec, OciLayout
from lab.node import NODE_NAME, Node
from lab.pki import CertificateAuthority, Identity, write_private
from lab.processes import Daemons, free_port
from lab.waiting import wait_for

if TYPE_CHECKING:
    from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi

REPO = Path(__file__).resolve().parent.parent
BACKUP_USER = "imageclone"
# Names that only the lab's forward proxy resolves (lab/forward_proxy.py): a client that reached a
# component by one of them went through the proxy. The components' certificates carry them.
PROXIED_NAMES = {"kube-apiserver": "kube.lab.test", "registry-source": "source.lab.test",
                 "registry-backup": "backup.lab.test"}
APISERVER_HOSTS = (
    "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local", "10.96.0.1", PROXIED_NAMES["kube-apiserver"],
)
REGISTRY_HOSTS = ("127.0.0.1", "localhost", PROXIED_NAMES["registry-source"], PROXIED_NAMES["registry-backup"])
# The API server's audit log keeps the writes of clients (tests, the product), never those of the
# lab's own components, so a test can tell from the server's side who wrote what, and when.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:kube-controller-manager", "system:apiserver"]},
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system", "system:nodes"]},
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}
# Bring-up order; teardown runs in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
              "registry-source", "registry-backup", "containerd", "kubelet")
# What makes pods run; a lab without them (with_node=False) keeps every pod Pending.
NODE_COMPONENTS = ("kube-scheduler", "containerd", "kubelet")
# Each gets a free port when the lab is first created (a lab made before one existed gets it on 'up').
PORTS = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
         "registry-source", "registry-backup", "kubelet", "kubelet-healthz")


def default_state_dir() -> Path:
    return Path(os.environ.get("IMAGECLONE_LAB_DIR", REPO / ".lab")).resolve()


@dataclass
class LabConfig:
    """What a running lab is: persisted as ``lab.json`` so every tool finds the same ports."""

    kubernetes_version: str
    bin_dir: str
    ports: dict[str, int]
    seeds: dict[str, str] = field(default_factory=dict)

    @property
    def source_registry(self) -> str:
        return f"127.0.0.1:{self.ports['registry-source']}"

    @property
    def backup_registry(self) -> str:
        return f"127.0.0.1:{self.ports['registry-backup']}"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    def proxied_address(self, component: str) -> str:
        """``name:port`` of a component by its name in ``PROXIED_NAMES``, which only the forward proxy resolves."""
        return f"{PROXIED_NAMES[component]}:{self.ports[component]}"


class Lab:
    """One lab instance rooted at ``state``.

    ``with_node=False`` leaves out the scheduler and the node: the tests' private
    labs need only the API and the registries, and the machine runs one node.
    """

    def __init__(self, state: Path | None = None, with_node: bool = True) -> None:
        self.state = state or default_state_dir()
        self.components = COMPONENTS if with_node else tuple(c for c in COMPONENTS if c not in NODE_COMPONENTS)
        self.daemons = Daemons(self.state)
        self.pki_dir = self.state / "pki"
        self.certs_dir = self.state / "certs.d"
        self.kubeconfig = self.state / "kubeconfig"
        self.node = Node(self.state)
        self.limited_kubeconfig = self.state / "kubeconfig-limited"
        self.backup_authfile = self.state / "backup-auth.json"
        self.backup_password_file = self.state / "backup-password"
        self._config_file = self.state / "lab.json"

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> LabConfig:
        try:
            return LabConfig(**json.loads(self._config_file.read_text()))
        except FileNotFoundError:
            raise RuntimeError(f"no lab in {self.state}: run 'make lab-up' (python -m lab up) first") from None

    def _save(self, config: LabConfig) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        # Atomic, so concurrent readers (parallel test workers) never see half a file.
        staging = self._config_file.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
        staging.replace(self._config_file)

    def _load_or_create(self, bin_dir: Path) -> LabConfig:
        if self._config_file.exists():
            config = self.config
            config.bin_dir = str(bin_dir)
        else:
            config = LabConfig(kubernetes_version=kubernetes_version(), bin_dir=str(bin_dir), ports={})
        for name in PORTS:
            config.ports.setdefault(name, free_port())
        return config

    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    def backup_password(self) -> str:
        return self.backup_password_file.read_text().strip()

    # -- lifecycle -----------------------------------------------------------------

    def up(self) -> LabConfig:
        """Start whatever is not running yet, seed the source registry once, return the config."""
        config = self._load_or_create(ensure_binaries())
        self._save(config)
        identities = self._pki()
        bin_dir = Path(config.bin_dir)
        self._ensure_etcd(config, bin_dir)
        self._ensure_apiserver(config, bin_dir, identities)
        self._ensure_controller_manager(config, bin_dir)
        if "kube-scheduler" in self.components:
            self._ensure_scheduler(config, bin_dir)
        self._ensure_registry("registry-source", config, identities["registry"], authenticated=False)
        self._ensure_registry("registry-backup", config, identities["registry"], authenticated=True)
        if not config.seeds:
            config.seeds = self.push_images(SEED_IMAGES + RUNNABLE_SEEDS)
            self._save(config)
        if "kubelet" in self.components:
            self._ensure_containerd(config)
            self._ensure_kubelet(config, bin_dir, identities)
        (self.state / "env.sh").write_text("\n".join(self.env_lines()) + "\n")
        return config

    def down(self) -> None:
        """Stop every component, the node's containers and mounts included, and remove the lab's state."""
        for name in reversed(self.components):
            if name == "containerd":
                self.node.stop_containers()
            self.daemons.stop(name)
            if name == "containerd":
                self.node.clean_up()
        if self.state.exists():
            shutil.rmtree(self.state)

    def status(self) -> dict[str, str]:
        """Each component: ``running (pid N)`` or ``stopped``."""
        result = {}
        for name in self.components:
            pid = self.daemons.pid(name)
            result[name] = f"running (pid {pid})" if pid else "stopped"
        return result

    def stop_component(self, name: str) -> None:
        """Stop one component and keep its state (for fault tests); ``up`` starts it again."""
        self.daemons.stop(name)

    def env_lines(self) -> list[str]:
        """Shell exports that point kubectl, skopeo and the product at this lab."""
        config = self.config
        values = {
            "KUBECONFIG": self.kubeconfig,
            "IMAGECLONE_LAB_DIR": self.state,
            "IMAGECLONE_SOURCE_REGISTRY": config.source_registry,
            "IMAGECLONE_BACKUP_REGISTRY": config.backup_registry,
            "IMAGECLONE_CA_CERT": self.ca_cert(),
            "IMAGECLONE_CERTS_DIR": self.certs_dir,
            "IMAGECLONE_BACKUP_AUTHFILE": self.backup_authfile,
            "PATH": f"{config.bin_dir}:{os.environ.get('PATH', '')}",
        }
        return [f"export {key}='{value}'" for key, value in values.items()]

    # -- components ----------------------------------------------------------------

    def _pki(self) -> dict[str, Identity]:
        ca = CertificateAuthority(self.pki_dir)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.cert_path, self.certs_dir / "ca.crt")
        return {
            "apiserver": ca.issue("apiserver", "kube-apiserver", hosts=APISERVER_HOSTS),
            "registry": ca.issue("registry", "lab-registry", hosts=REGISTRY_HOSTS),
            "admin": ca.issue("admin", "lab-admin", organization="system:masters", client=True),
            "limited": ca.issue("limited", "lab-limited", client=True),
            "controller-manager": ca.issue("controller-manager", "system:kube-controller-manager", client=True),
            "scheduler": ca.issue("scheduler", "system:kube-scheduler", client=True),
            # The kubelet is a node: the Node authorizer and NodeRestriction limit it to its own pods.
            "node": ca.issue("node", f"system:node:{NODE_NAME}", organization="system:nodes", client=True),
            "kubelet-serving": ca.issue("kubelet-serving", NODE_NAME, hosts=("127.0.0.1", "localhost", NODE_NAME)),
            "service-accounts": ca.service_account_keys(),
        }

    def _ensure_etcd(self, config: LabConfig, bin_dir: Path) -> None:
        name = "etcd"
        if self.daemons.pid(name):
            return
        client = f"http://127.0.0.1:{config.ports['etcd']}"
        peer = f"http://127.0.0.1:{config.ports['etcd-peer']}"
        self.daemons.start(name, [
            str(bin_dir / "etcd"), "--name=lab", f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}", "--log-level=warn",
            # A lab on one disk: durability across power loss is not worth the fsync latency.
            "--unsafe-no-fsync",
        ])
        self._wait_ready(name, lambda: http_status(f"{client}/health") == 200, 60)

    def _ensure_apiserver(self, config: LabConfig, bin_dir: Path, ids: dict[str, Identity]) -> None:
        name = "kube-apiserver"
        if not self.daemons.pid(name):
            policy = self.state / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(AUDIT_POLICY))
            self.daemons.start(name, [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{config.ports['etcd']}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={config.ports[name]}",
                f"--tls-cert-file={ids['apiserver'].cert}", f"--tls-private-key-file={ids['apiserver'].key}",
                f"--client-ca-file={self.ca_cert()}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={ids['service-accounts'].cert}",
                f"--service-account-signing-key-file={ids['service-accounts'].key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # Endpoints may not hold a loopback address, so the 'kubernetes' service is left alone.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-maxsize=200", "--audit-log-maxbackup=1",
            ])
        self._write_kubeconfig(self.kubeconfig, config, ids["admin"], "lab-admin")
        self._write_kubeconfig(self.limited_kubeconfig, config, ids["limited"], "lab-limited")
        self._write_kubeconfig(self.state / "kubeconfig-controller-manager", config,
                               ids["controller-manager"], "kube-controller-manager")
        self._write_kubeconfig(self.state / "kubeconfig-scheduler", config, ids["scheduler"], "kube-scheduler")
        self._write_kubeconfig(self.state / "kubeconfig-node", config, ids["node"], f"system:node:{NODE_NAME}")
        context = _client_tls(self.ca_cert(), ids["admin"])
        self._wait_ready(name, lambda: http_status(f"{config.apiserver_url}/readyz", context) == 200, 120)

    def _ensure_controller_manager(self, config: LabConfig, bin_dir: Path) -> None:
        name = "kube-controller-manager"
        if self.daemons.pid(name):
            return
        self.daemons.start(name, [
            *self._control_plane_argv(name, config, bin_dir, "controller-manager"),
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_cert()}",
            "--cluster-name=image-clone-lab",
        ])
        # The controller manager is useful once it has created the default service account.
        self._wait_ready(name, lambda: self._kubectl_ok("get", "serviceaccount", "default", "-n", "default"), 90)

    def _control_plane_argv(self, name: str, config: LabConfig, bin_dir: Path, short_name: str) -> list[str]:
        """The flags kube-controller-manager and kube-scheduler share: identity, loopback port, one instance."""
        kubeconfig = self.state / f"kubeconfig-{short_name}"
        return [
            str(bin_dir / name),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={config.ports[name]}",
            f"--cert-dir={self.state / short_name}",
            "--leader-elect=false",
        ]

    def _ensure_scheduler(self, config: LabConfig, bin_dir: Path) -> None:
        name = "kube-scheduler"
        if self.daemons.pid(name):
            return
        self.daemons.start(name, self._control_plane_argv(name, config, bin_dir, "scheduler"))
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # it serves a self-signed certificate
        self._wait_ready(name, lambda: http_status(f"https://127.0.0.1:{config.ports[name]}/healthz", context) == 200,
                         60)

    def _ensure_containerd(self, config: LabConfig) -> None:
        name = "containerd"
        if not self.daemons.pid(name):
            settings = self.node.containerd_config([config.source_registry, config.backup_registry], self.ca_cert())
            self.daemons.start(name, ["containerd", f"--config={settings}"])
        self._wait_ready(name, self.node.containerd_ready, 30)
        self.node.import_pause_image()

    def _ensure_kubelet(self, config: LabConfig, bin_dir: Path, ids: dict[str, Identity]) -> None:
        name = "kubelet"
        if not self.daemons.pid(name):
            settings = self.node.kubelet_config(self.ca_cert(), ids["kubelet-serving"].cert, ids["kubelet-serving"].key,
                                                config.ports[name], config.ports["kubelet-healthz"])
            self.daemons.start(name, [
                str(bin_dir / "kubelet"),
                f"--config={settings}",
                f"--kubeconfig={self.state / 'kubeconfig-node'}",
                f"--root-dir={self.node.kubelet_dir}",
                f"--cert-dir={self.node.kubelet_dir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                "--node-ip=127.0.0.1",
            ])
        self._wait_ready(name, self.node_ready, 120)

    def node_ready(self) -> bool:
        """Whether the node reports Ready to the API server."""
        result = self.kubectl("get", "node", NODE_NAME, "-o",
                              "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        return result.returncode == 0 and result.stdout.strip() == "True"

    def _ensure_registry(self, name: str, config: LabConfig, tls: Identity, authenticated: bool) -> None:
        if self.daemons.pid(name):
            return
        (self.state / name).mkdir(parents=True, exist_ok=True)
        htpasswd = self._htpasswd(self.state / name, config) if authenticated else None
        self.start_registry(name, "docker-registry", config.ports[name], tls, htpasswd)

    def start_registry(self, name: str, binary: str, port: int, tls: Identity, htpasswd: Path | None) -> None:
        """Run a distribution registry (``binary serve <config>``) as the lab's daemon ``name`` on ``port``,
        with TLS, storage under ``state/name``, an access log, and basic auth when given ``htpasswd``."""
        directory = self.state / name
        directory.mkdir(parents=True, exist_ok=True)
        settings: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(directory / "data")},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": f"127.0.0.1:{port}",
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(tls.cert), "key": str(tls.key)},
            },
        }
        if htpasswd is not None:
            settings["auth"] = {"htpasswd": {"realm": "image-clone-backup", "path": str(htpasswd)}}
        config_file = directory / "config.yml"
        config_file.write_text(yaml.safe_dump(settings))
        self.daemons.start(name, [binary, "serve", str(config_file)])
        url = f"https://127.0.0.1:{port}/v2/"
        context = ssl.create_default_context(cafile=str(self.ca_cert()))
        self._wait_ready(name, lambda: http_status(url, context) in (200, 401), 30)

    def _htpasswd(self, directory: Path, config: LabConfig) -> Path:
        """Create the backup registry's only user and an auth file clients can read it from."""
        path = directory / "htpasswd"
        if path.exists() and self.backup_password_file.exists():
            return path
        password = secrets.token_urlsafe(24)
        # The password goes through stdin, never argv.
        subprocess.run(["htpasswd", "-B", "-i", "-c", str(path), BACKUP_USER],
                       input=password.encode(), check=True, capture_output=True)
        write_private(self.backup_password_file, (password + "\n").encode())
        token = base64.b64encode(f"{BACKUP_USER}:{password}".encode()).decode()
        write_private(self.backup_authfile,
                      json.dumps({"auths": {config.backup_registry: {"auth": token}}}, indent=2).encode())
        return path

    # -- images ----------------------------------------------------------------------

    def push_images(self, specs: tuple[ImageSpec, ...], parallel: int = 4, registry: str | None = None,
                    authfile: Path | None = None) -> dict[str, str]:
        """Generate ``specs`` and push them to the source registry (or ``registry``, logging in with
        ``authfile``); return ``repo:tag`` -> digest."""
        registry = registry or self.config.source_registry
        login = [f"--dest-authfile={authfile}"] if authfile else []
        with tempfile.TemporaryDirectory(prefix="oci-", dir=self.state) as tmp:
            layout = OciLayout(Path(tmp))
            digests = {spec.ref_name: layout.add(spec) for spec in specs}

            def push(spec: ImageSpec) -> None:
                self.skopeo("copy", "--all", "--preserve-digests", "--retry-times=2",
                            f"--dest-cert-dir={self.certs_dir}", *login,
                            f"oci:{tmp}:{spec.ref_name}", f"docker://{registry}/{spec.ref_name}")

            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(push, specs))
        return digests

    def delete_source_tag(self, ref_name: str) -> None:
        """Delete ``repo:tag`` from the source registry, as an upstream owner would."""
        self.skopeo("delete", f"--cert-dir={self.certs_dir}", f"docker://{self.config.source_registry}/{ref_name}")

    def backup_options(self, prefix: str) -> dict[str, str]:
        """Module-style backup options into a fresh repository ``<backup registry>/<prefix>/<random>``."""
        return {
            "backup_registry": f"{self.config.backup_registry}/{prefix}/{secrets.token_hex(5)}",
            "backup_authfile": str(self.backup_authfile),
            "certs_dir": str(self.certs_dir),
        }

    def source_image(self, ref_name: str) -> str:
        """The full reference of a seeded image, e.g. ``127.0.0.1:PORT/library/nginx:1.27``."""
        return f"{self.config.source_registry}/{ref_name}"

    def registry_requests(self, name: str, repository: str | None = None) -> list[RegistryRequest]:
        """Requests ``registry-source`` or ``registry-backup`` logged so far, oldest first.

        With ``repository`` (a path such as ``tests/abc``), only the requests for
        it: tests sharing the lab each count their own traffic.
        """
        log = self.daemons.log_file(name)
        if not log.exists():
            return []
        requests = parse_access_log(log.read_text(errors="replace"))
        if repository is None:
            return requests
        return [r for r in requests if r.path.startswith(f"/v2/{repository}/")]

    @property
    def audit_log(self) -> Path:
        return self.daemons.log_dir / "audit.log"

    def audit_events(self, user_agent: str | None = None) -> list[dict]:
        """Write requests the API server has audited so far, oldest first; with ``user_agent``,
        only those whose User-Agent contains it."""
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text(errors="replace").splitlines()
        events = [json.loads(line) for line in lines if line and (user_agent is None or user_agent in line)]
        return [e for e in events if user_agent is None or user_agent in e.get("userAgent", "")]

    def skopeo(self, *args: str) -> str:
        result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"skopeo {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    # -- helpers -------------------------------------------------------------------

    def admin_api(self, field_manager: str = "test-setup", **options: Any) -> KubeApi:
        """The engine's ``KubeApi`` as the lab's admin, for setting up and reading back what tests and
        benchmarks run; ``options`` go to ``KubeApi`` (``page_size``, ``timeouts``).

        Its writes carry ``field_manager``, so they never pass for image-clone's own unless asked to.
        """
        # Imported on use: the lab runs without the engine; its callers made it importable.
        from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, new_api_client

        return KubeApi(new_api_client({"kubeconfig": str(self.kubeconfig)}), field_manager=field_manager, **options)

    def kubectl(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(self.config.bin_dir) / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            capture_output=True, text=True,
        )

    def _kubectl_ok(self, *args: str) -> bool:
        return self.kubectl(*args).returncode == 0

    def _wait_ready(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        wait_for(ready, f"{name} to be ready", timeout, interval=0.2, explain=lambda: self.daemons.log_tail(name))

    def _write_kubeconfig(self, path: Path, config: LabConfig, identity: Identity, user: str) -> None:
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "image-clone-lab", "cluster": {
                "server": config.apiserver_url, "certificate-authority": str(self.ca_cert())}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(identity.cert), "client-key": str(identity.key)}}],
            "contexts": [{"name": user, "context": {"cluster": "image-clone-lab", "user": user}}],
            "current-context": user,
        }
        write_private(path, yaml.safe_dump(document).encode())


@dataclass(frozen=True)
class RegistryRequest:
    """One line of a registry's access log."""

    method: str
    path: str
    status: int
    user_agent: str = ""
    size: int = 0  # bytes of the response body

    @property
    def by_node(self) -> bool:
        """Whether the lab's node (its containerd) made the request, pulling for a pod."""
        return self.user_agent.startswith("containerd/")


_ACCESS_LOG_LINE = re.compile(
    r'^\S+ - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
    r'(?:(?P<size>\S+) "[^"]*" "(?P<agent>[^"]*)")?', re.M)


def parse_access_log(text: str) -> list[RegistryRequest]:
    """The requests in ``text``, lines of a lab registry's log, oldest first; its other lines are left out."""
    return [RegistryRequest(m["method"], m["path"], int(m["status"]), m["agent"] or "",
                            int(m["size"]) if (m["size"] or "").isdigit() else 0)
            for m in _ACCESS_LOG_LINE.finditer(text)]


def _client_tls(ca: Path, identity: Identity) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


def http_status(url: str, context: ssl.SSLContext | None = None) -> int:
    """The status a GET of ``url`` answers; 0 while nothing answers (not listening yet, TLS not up)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0
