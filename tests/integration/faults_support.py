"""Helpers shared by the fault, bad-input and security tests (``test_faults_*.py``).

* ``isolated_lab``: one private lab (own etcd, API server, registries) per test session, for the
  tests that stop, kill or compact lab components; it is torn down when the session ends.
* ``ProcessWatch``: scans ``/proc`` while something runs: every command line of the watched
  process trees is checked for secrets, and skopeo processes are recorded (pid, parent, argv).
* ``AuthDirWatch``: watches a ``TMPDIR`` for image-clone's private auth directories and records
  their modes (and their auth files') while they exist.
* ``big_image``: a large synthetic image (several ~20 MB incompressible layers), generated fast
  and pushed to a source registry once, so a copy lasts long enough to be interrupted.
* ``backup_problems``: HEAD every backup reference a workload points at; what is not there.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kube import FIELD_MANAGER, KubeApi, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.reference import InvalidReference, parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient, RegistryError
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.images import FastLayer, ImageSpec
from lab.lab import BACKUP_USER, Lab, RegistryRequest, parse_access_log
from lab.processes import alive
from lab.waiting import wait_for
from lab.workloads import CONTAINER_SECTIONS, pod_spec_of

AUTH_DIR_PREFIX = "imageclone-auth-"
NAMESPACE = Resource("Namespace", "v1", "namespaces", namespaced=False)
EVENT = Resource("Event", "v1", "events")
SECRET = Resource("Secret", "v1", "secrets")
WATCHED_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "CronJob")

# -- the isolated lab ------------------------------------------------------------------------------

_ISOLATED: dict[str, Lab] = {}


def isolated_lab(request, tmp_path_factory) -> Lab:
    """The session's private lab, started on first use and torn down when the session ends.

    Fixtures of several test modules share it (a bring-up costs ~10 s); every caller gets it
    back with all components running (a test that stopped one and failed is healed here).
    """
    lab = _ISOLATED.get("lab")
    if lab is None:
        lab = Lab(tmp_path_factory.mktemp("faults-isolated") / "lab", with_node=False)
        request.config.add_cleanup(lab.down)
        _ISOLATED["lab"] = lab
    lab.up()
    return lab


def new_namespace(lab: Lab, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    lab.admin_api().create(NAMESPACE, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# -- secrets -----------------------------------------------------------------------------------------

def secret_forms(password: str, username: str = BACKUP_USER) -> list[str]:
    """The password and the encodings that carry it: basic auth (padded or not) and plain base64."""
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [password, basic, basic.rstrip("="), base64.b64encode(password.encode()).decode().rstrip("=")]


def leaked(text: str, forms: Iterable[str]) -> list[str]:
    """Which of ``forms`` occur in ``text`` (named by position, never echoed)."""
    return [f"secret form #{number}" for number, form in enumerate(forms) if form and form in text]


# -- watching processes --------------------------------------------------------------------------------

@dataclass
class SeenProcess:
    pid: int
    ppid: int
    argv: list[str]
    first_seen: float


def _proc_table() -> dict[int, tuple[int, bytes]]:
    """``pid -> (ppid, raw cmdline)`` of every process we may read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        try:
            # The command name may hold spaces and parentheses: the ppid follows the last ')'.
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (ValueError, IndexError):
            continue  # gone while we read it
        table[int(entry.name)] = (ppid, cmdline)
    return table


def descendants(table: dict[int, tuple[int, bytes]], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root for root in roots if root in table]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo += children.get(pid, [])
    return found


class BackgroundWatch:
    """Calls ``poll()`` every ``interval`` seconds in a thread of its own while the ``with`` block runs."""

    def __init__(self, name: str, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self._interval)

    def poll(self) -> None:
        raise NotImplementedError


class ProcessWatch(BackgroundWatch):
    """Scan ``/proc`` in a thread until stopped.

    Only the process trees of ``roots()`` are looked at (other people's tests share this
    machine). Every command line seen is checked for ``forbidden`` strings; skopeo processes
    are recorded and their environment is checked too. ``scans`` counts full passes, so a
    test can show the watch really ran.
    """

    def __init__(self, roots: Callable[[], Iterable[int]], forbidden: Iterable[str], interval: float = 0.005):
        super().__init__("process-watch", interval)
        self._roots = roots
        self._forbidden = [form.encode() for form in forbidden if form]
        self.scans = 0
        self.commands_checked = 0
        self.environments_checked = 0
        self.offenders: list[str] = []
        self.skopeo: dict[int, SeenProcess] = {}

    def _roots_now(self) -> list[int]:
        try:
            return list(self._roots())
        except Exception:  # noqa: BLE001 - e.g. the process to watch is not started yet
            return []

    def poll(self) -> None:
        table = _proc_table()
        for pid in descendants(table, self._roots_now()):
            ppid, cmdline = table[pid]
            self.commands_checked += 1
            for number, form in enumerate(self._forbidden):
                if form in cmdline:
                    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
                    self.offenders.append(f"pid {pid} ({argv0}) carries secret form #{number}")
            argv = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
            if argv and os.path.basename(argv[0]) == "skopeo" and pid not in self.skopeo:
                self.skopeo[pid] = SeenProcess(pid, ppid, argv, time.monotonic())
                self._check_environment(pid)
        self.scans += 1

    def _check_environment(self, pid: int) -> None:
        """skopeo gets a filtered environment: the password must not be in it (read after its exec)."""
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environment = handle.read()
        except OSError:
            return
        self.environments_checked += 1
        for number, form in enumerate(self._forbidden):
            if form in environment:
                self.offenders.append(f"pid {pid} (skopeo) has secret form #{number} in its environment")

    def copies(self) -> list[SeenProcess]:
        return [process for process in self.skopeo.values() if len(process.argv) > 1 and process.argv[1] == "copy"]


def wait_for_skopeo_copy(watch: ProcessWatch, match: str, timeout: float = 60.0) -> SeenProcess:
    """The first skopeo copy whose argv mentions ``match`` (still running when returned)."""
    return wait_for(lambda: next((process for process in watch.copies()
                                  if any(match in part for part in process.argv) and alive(process.pid)), None),
                    f"a skopeo copy of {match}", timeout, interval=0.005)


# -- watching auth files ----------------------------------------------------------------------------

class AuthDirWatch(BackgroundWatch):
    """Poll ``directory`` (a ``TMPDIR``) for image-clone's private auth directories.

    Records every auth directory seen, the modes it and its auth file had, and how often an
    auth file was seen at all. ``leftovers()`` lists what is still there.
    """

    def __init__(self, directory: Path, interval: float = 0.002) -> None:
        super().__init__("authdir-watch", interval)
        self.directory = directory
        self.directories: set[str] = set()
        self.modes: set[tuple[str, str]] = set()  # ("dir" | "file", octal mode)
        self.files_seen = 0

    def poll(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if not entry.name.startswith(AUTH_DIR_PREFIX):
                continue
            try:
                self.modes.add(("dir", oct(os.stat(entry.path).st_mode & 0o777)))
                for inner in os.scandir(entry.path):
                    self.modes.add(("file", oct(os.stat(inner.path).st_mode & 0o777)))
                    self.files_seen += 1
            except OSError:
                continue  # removed while we looked: fine
            self.directories.add(entry.name)

    def leftovers(self) -> list[str]:
        return sorted(entry.name for entry in os.scandir(self.directory) if entry.name.startswith(AUTH_DIR_PREFIX))


# -- images ---------------------------------------------------------------------------------------------

# One small layer that lands at once, then big ones still streaming: a copy can be caught half
# done. Fresh content on every call: skopeo's blob-info cache (for root, machine-wide in
# /var/lib/containers/cache) would otherwise mount known blobs from another repository of the
# backup registry, and the "copy" would be over in milliseconds. ~50 MB copy in ~0.3 s here.
BIG_LAYER_SIZES = (512 * 1024, 16 * 1024 * 1024, 16 * 1024 * 1024, 16 * 1024 * 1024)


def big_image(lab: Lab, name: str = "faults/big") -> str:
    """A fresh ~50 MB single-platform image in ``lab``'s source registry."""
    run = uuid.uuid4().hex[:8]
    layers = tuple(FastLayer(f"{name}-{run}-{n}", size) for n, size in enumerate(BIG_LAYER_SIZES))
    spec = ImageSpec(f"{name}-{run}", "v1", layers)
    lab.push_images((spec,), parallel=1)
    return lab.source_image(spec.ref_name)


def small_images(lab: Lab, count: int, size: int = 256 * 1024, prefix: str = "faults/small") -> list[str]:
    """``count`` distinct small images (fresh names) in ``lab``'s source registry."""
    run = uuid.uuid4().hex[:8]
    specs = tuple(ImageSpec(f"{prefix}{run}", f"v{n}", (FastLayer(f"{prefix}-{run}-{n}", size),))
                  for n in range(count))
    lab.push_images(specs, parallel=4)
    return [lab.source_image(spec.ref_name) for spec in specs]


def registry_client(lab: Lab, **options: Any) -> RegistryClient:
    return RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir, **options)


def backup_problems(lab: Lab, images: Iterable[str], backup_prefix: str) -> list[str]:
    """For each image under ``backup_prefix``: HEAD it by digest and by tag; what is wrong, if anything.

    An image outside the backup (a workload still on its source image) is fine: it was not
    rewritten. A backup reference must be pinned, and both its digest and its tag must resolve
    to that digest in the backup registry.
    """
    client = registry_client(lab)
    problems = []
    for image in images:
        if not image.startswith(backup_prefix):
            continue
        try:
            reference = parse_reference(image, default_tag=None)
        except InvalidReference as error:
            problems.append(f"{image}: unparsable: {error}")
            continue
        if reference.digest is None or reference.tag is None:
            problems.append(f"{image}: a backup reference must be tag@digest")
            continue
        for probe in (reference.without_tag(), reference.without_digest()):
            try:
                found = client.head_manifest(probe)
            except RegistryError as error:
                problems.append(f"{probe}: {error}")
                continue
            if found is None:
                problems.append(f"{probe}: not in the backup registry")
            elif found.digest != reference.digest:
                problems.append(f"{probe}: has {found.digest}, the workload pins {reference.digest}")
    return problems


class AccessLog:
    """Follow one registry's access log from now on (the shared lab's logs are tens of MB)."""

    def __init__(self, lab: Lab, name: str = "registry-backup") -> None:
        self.path = lab.daemons.log_file(name)
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._pending = b""
        self.requests: list[RegistryRequest] = []

    def poll(self) -> list[RegistryRequest]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.requests
        self._offset += len(data)
        text = self._pending + data
        complete, _, self._pending = text.rpartition(b"\n")
        self.requests += parse_access_log(complete.decode(errors="replace"))
        return self.requests

    def count(self, repository_path: str, method: str, fragment: str) -> int:
        """Successful ``method`` requests under ``/v2/<repository_path>/`` whose path holds ``fragment``."""
        prefix = f"/v2/{repository_path}/"
        return len([r for r in self.poll() if r.method == method and r.path.startswith(prefix)
                    and fragment in r.path and r.status < 300])

    def manifests_written(self, repository_path: str, reference: str = "") -> int:
        """Manifests PUT into the repository (by ``reference``, a tag or digest, when given)."""
        return self.count(repository_path, "PUT", f"/manifests/{reference}")

    def blobs_written(self, repository_path: str, digests: Iterable[str] | None = None) -> int:
        """Blob uploads completed into the repository (only those of ``digests`` when given)."""
        wanted = None if digests is None else {digest.replace(":", "%3A") for digest in digests}
        prefix = f"/v2/{repository_path}/blobs/uploads/"
        return len([r for r in self.poll() if r.method == "PUT" and r.path.startswith(prefix) and r.status < 300
                    and (wanted is None or r.path.rsplit("digest=", 1)[-1] in wanted)])


def blob_digests(lab: Lab, image: str) -> list[str]:
    """The config and layer digests of a single-platform image in ``lab``'s source registry."""
    manifest = json.loads(lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{image}"))
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


# -- workloads ------------------------------------------------------------------------------------------

def workload_images(api: KubeApi, namespace: str, kinds: Iterable[str] = WATCHED_KINDS) -> dict[str, list[str]]:
    """``Kind/name -> every image of its init and regular containers`` in ``namespace``."""
    found = {}
    for kind in kinds:
        for obj in api.list(KINDS[kind], namespace)[0]:
            spec = pod_spec_of(kind, obj)
            found[f"{kind}/{obj['metadata']['name']}"] = [
                container.get("image", "") for section in CONTAINER_SECTIONS for container in spec.get(section) or ()]
    return found


def simple_deployment(name: str, images: dict[str, str], **metadata: Any) -> dict[str, Any]:
    """A Deployment with one container per ``name -> image`` (Pods never run: no scheduler)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, **metadata},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": cname, "image": image} for cname, image in images.items()]}}},
    }


def events(api: KubeApi, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    found = api.list(EVENT, namespace)[0]
    return [event for event in found if name is None or event.get("involvedObject", {}).get("name") == name]


# -- etcd -------------------------------------------------------------------------------------------

def etcd_call(lab: Lab, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{lab.config.ports['etcd']}{path}",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def etcd_compact(lab: Lab) -> int:
    """Compact etcd's history up to its current revision (physically); returns that revision."""
    revision = int(etcd_call(lab, "/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    etcd_call(lab, "/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


# -- misc ---------------------------------------------------------------------------------------------

@dataclass
class Timer:
    """Wall-clock marks of one test, printed with ``pytest -s``."""

    started: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = round(time.monotonic() - self.started, 2)
        print(f"  [{self.marks[name]:6.2f}s] {name}")


# -- the engine ----------------------------------------------------------------------------------------

def engine_migration(lab: Lab, repository_path: str, namespaces: Iterable[str], *, retry_times: int = 3,
                     max_retries: int = 4, parallel: int = 8, per_registry: int = 4,
                     pull_secret_name: str | None = None, copier: str = "native"):
    """The engine's ``Migration`` over ``namespaces``, backing up into the flat repository
    ``<backup registry>/<repository_path>`` with the lab's auth file (as the modules build it),
    copying with ``copier`` (``skopeo`` or ``native``)."""
    from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService, BackupSettings
    from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, PullSecret, Scope
    from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
    from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
    from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo

    store = CredentialStore.from_authfile(lab.backup_authfile)
    policy = NamingPolicy("flat", f"{lab.config.backup_registry}/{repository_path}")
    registry = RegistryClient(store, certs_dir=lab.certs_dir, max_retries=max_retries)
    copies = (NativeCopier(registry, attempts=retry_times + 1) if copier == "native"
              else Skopeo(certs_dir=lab.certs_dir, retry_times=retry_times))
    settings = BackupSettings(parallel=parallel, per_registry=per_registry)
    backups = BackupService(registry, copies, store, policy, settings)
    pull_secret = None
    if pull_secret_name:
        pull_secret = PullSecret(lab.config.backup_registry, BACKUP_USER, lab.backup_password(), pull_secret_name)
    api = lab.admin_api(FIELD_MANAGER)
    return Migration(api, backups, Scope(namespaces=tuple(namespaces)), pull_secret)


def reports_by_name(report) -> dict[str, Any]:
    """``Kind/name -> WorkloadReport`` of a ``MigrationReport``."""
    return {f"{r.key.split('/')[0]}/{r.key.split('/')[-1]}": r for r in report.workloads}


def auth_file_problems(watch: ProcessWatch, authdirs: AuthDirWatch) -> list[str]:
    """What was wrong with the auth files the watched skopeo copies used (nothing: ``[]``).

    Each copy names its auth file on its command line. One on disk must be inside the watched
    TMPDIR, seen by the watch with mode 0600 in a 0700 directory, and gone afterwards; one in
    memory (``/dev/fd/N``, ``/proc/...``) leaves nothing to check on disk.
    """
    paths = {arg.split("=", 1)[1] for process in watch.copies() for arg in process.argv
             if arg.startswith(("--src-authfile=", "--dest-authfile=", "--authfile="))}
    on_disk = sorted(path for path in paths if not path.startswith(("/dev/fd/", "/proc/")))
    problems = []
    if not watch.copies():
        problems.append("no skopeo copy was seen")
    outside = [path for path in on_disk if not path.startswith(f"{authdirs.directory}/{AUTH_DIR_PREFIX}")]
    if outside:
        problems.append(f"auth files outside the private TMPDIR directories: {outside}")
    if on_disk and not authdirs.files_seen:
        problems.append("the watch never caught an auth file while it existed")
    if not authdirs.modes <= {("dir", "0o700"), ("file", "0o600")}:
        problems.append(f"modes seen: {sorted(authdirs.modes)}")
    if authdirs.leftovers():
        problems.append(f"left behind: {authdirs.leftovers()}")
    return problems
