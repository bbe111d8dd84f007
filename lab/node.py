"""The lab's node: containerd (with runc and a loopback-only CNI) and a kubelet.

One node, named ``lab-node``, on 127.0.0.1. Pods on it must use ``hostNetwork: true``
(the CNI configuration only gives sandboxes a loopback interface) and tolerate the
node's taint, which keeps every other pod the tests create Pending as before.
containerd gets its own root, state and socket under the lab directory, trusts the
lab CA for both registries, and uses a pause image built here rather than pulled.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import yaml

from lab.images import PAUSE_IMAGE, OciLayout
from lab.processes import alive, kill
from lab.waiting import wait_for

NODE_NAME = "lab-node"
# Only pods that ask for the node get it: the other tests' pods stay Pending and pull nothing.
NODE_TAINT = {"key": "imageclone.io/lab-node", "value": "run", "effect": "NoSchedule"}
NODE_TOLERATION = {"key": NODE_TAINT["key"], "operator": "Equal", "value": NODE_TAINT["value"],
                   "effect": NODE_TAINT["effect"]}
PAUSE_REFERENCE = f"lab.local/{PAUSE_IMAGE.ref_name}"
CRI_NAMESPACE = "k8s.io"
CNI_PLUGINS = Path("/usr/lib/cni")
SHIM = "containerd-shim-runc-v2"


def node_pod_spec(containers: list[dict], **fields) -> dict:
    """A pod spec the lab's node runs: host network, the node's toleration, tiny containers."""
    return {
        "hostNetwork": True,
        "tolerations": [NODE_TOLERATION],
        "terminationGracePeriodSeconds": 1,
        "containers": [{"resources": {"requests": {"cpu": "5m", "memory": "8Mi"},
                                      "limits": {"memory": "32Mi"}}, **container} for container in containers],
        **fields,
    }


class Node:
    """Files and housekeeping of the node living in ``state``; the Lab starts its daemons."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.containerd_dir = state / "containerd"
        self.socket = self.containerd_dir / "containerd.sock"
        self.kubelet_dir = state / "kubelet"

    # -- containerd --------------------------------------------------------------------

    def containerd_config(self, registries: list[str], ca_cert: Path) -> Path:
        """Write containerd's configuration, the CNI conflist and a hosts.toml per registry."""
        hosts_dir = self.containerd_dir / "certs.d"
        for registry in registries:
            directory = hosts_dir / registry
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts.toml").write_text(
                f'server = "https://{registry}"\n\n[host."https://{registry}"]\n'
                f'  capabilities = ["pull", "resolve"]\n  ca = "{ca_cert}"\n')
        cni_dir = self.containerd_dir / "net.d"
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-lab-loopback.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": "lab-loopback", "plugins": [{"type": "loopback"}]}, indent=2))
        cri = {
            "sandbox_image": PAUSE_REFERENCE,
            # runc cannot raise its own OOM score adjustment inside this sandboxed host.
            "restrict_oom_score_adj": True,
            "disable_apparmor": True,
            "stream_server_address": "127.0.0.1",
            "stream_server_port": "0",
            "containerd": {
                "snapshotter": "overlayfs",
                "default_runtime_name": "runc",
                "runtimes": {"runc": {"runtime_type": "io.containerd.runc.v2",
                                      "options": {"SystemdCgroup": False}}},
            },
            "cni": {"bin_dir": str(CNI_PLUGINS), "conf_dir": str(cni_dir), "max_conf_num": 1},
            "registry": {"config_path": str(hosts_dir)},
        }
        config = {
            "version": 2,
            "root": str(self.containerd_dir / "root"),
            "state": str(self.containerd_dir / "state"),
            "grpc": {"address": str(self.socket)},
            "ttrpc": {"address": f"{self.socket}.ttrpc"},
            "metrics": {"address": ""},
            # Plugins the lab never uses, and 'opt', which would write to /opt/containerd.
            "disabled_plugins": [
                "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
            ],
            "plugins": {"io.containerd.grpc.v1.cri": cri},
        }
        path = self.containerd_dir / "config.toml"
        path.write_text(_toml(config))
        return path

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``ctr`` against the lab's containerd, in the namespace the kubelet's images live in."""
        result = subprocess.run(["ctr", f"--address={self.socket}", f"--namespace={CRI_NAMESPACE}", *args],
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result

    def containerd_ready(self) -> bool:
        return self.socket.exists() and self.ctr("version", check=False).returncode == 0

    def import_pause_image(self) -> None:
        """Build the sandbox image and import it, so the node never pulls one from the internet."""
        if PAUSE_REFERENCE in self.images():
            return
        with tempfile.TemporaryDirectory(prefix="pause-", dir=self.state) as tmp:
            layout_dir = Path(tmp) / "layout"
            OciLayout(layout_dir).add(PAUSE_IMAGE)
            index = json.loads((layout_dir / "index.json").read_text())
            for descriptor in index["manifests"]:
                descriptor["annotations"]["io.containerd.image.name"] = PAUSE_REFERENCE
            (layout_dir / "index.json").write_text(json.dumps(index))
            archive = Path(tmp) / "pause.tar"
            with tarfile.open(archive, "w") as tar:
                for entry in sorted(layout_dir.rglob("*")):
                    tar.add(entry, arcname=str(entry.relative_to(layout_dir)), recursive=False)
            self.ctr("images", "import", "--all-platforms", str(archive))

    def images(self) -> list[str]:
        """References the node holds (tags, digests and image IDs)."""
        return list(self._image_digests())

    def _image_digests(self) -> dict[str, str]:
        """Each name the node holds -> the digest of the manifest (or index) it names."""
        lines = self.ctr("images", "list").stdout.splitlines()[1:]
        return {fields[0]: fields[2] for fields in (line.split() for line in lines) if len(fields) > 2}

    def containers(self, namespaces: list[str]) -> list[str]:
        """IDs of the containers (sandboxes included) the node still holds for pods of ``namespaces``."""
        found: list[str] = []
        for namespace in namespaces:
            listed = self.ctr("containers", "list", "--quiet",
                              f'labels."io.kubernetes.pod.namespace"=={namespace}', check=False)
            found += [line for line in listed.stdout.split() if line]
        return found

    def delete_stopped_containers(self, ids: list[str]) -> None:
        """Delete those of ``ids`` whose task has ended (a running one is refused and left alone)."""
        for container in ids:
            self.ctr("tasks", "delete", container, check=False)
            self.ctr("containers", "delete", container, check=False)

    def remove_images(self, references: list[str]) -> list[str]:
        """Forget the node's copy of each reference, as CRI RemoveImage would; return the names removed.

        ``references`` are image names as pods use them. Every name of the same
        image goes too: its ``repo@digest`` name and the ``sha256:`` image ID the
        CRI plugin adds, so the next pod using it must pull again.
        """
        held = self._image_digests()
        named = {name: digest for name, digest in held.items()
                 if any(_same_image(name, reference) for reference in references)}
        doomed = [*named, *(name for name, digest in held.items()
                            if name.startswith("sha256:") and digest in named.values())]
        if doomed:
            self.ctr("images", "remove", "--sync", *doomed)
        return doomed

    # -- kubelet -------------------------------------------------------------------------

    def kubelet_config(self, ca_cert: Path, serving_cert: Path, serving_key: Path,
                       port: int, healthz_port: int) -> Path:
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(ca_cert)}},
            "authorization": {"mode": "AlwaysAllow"},
            # No systemd and no QoS cgroup tree here: plain cgroupfs, nothing reserved.
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "registerWithTaints": [NODE_TAINT],
            "maxPods": 30,
            # The lab shares a disk with everything else: never evict or collect images for space.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            # Container logs stay in the lab directory, not in /var/log/pods.
            "podLogsDir": str(self.kubelet_dir / "pod-logs"),
        }
        path = self.kubelet_dir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    # -- teardown ------------------------------------------------------------------------

    def stop_containers(self) -> None:
        """Kill and delete every container while containerd runs, so it releases their mounts and cgroups."""
        if not self.containerd_ready():
            return
        for task in self.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "list", "--quiet", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def clean_up(self) -> None:
        """After containerd stopped: kill containers and shims still left, then unmount what they mounted."""
        shims = self.shims()
        doomed = set()
        for shim in shims:
            doomed |= _descendants(shim)
        for pid in [*doomed, *shims]:
            kill(pid)
        with contextlib.suppress(TimeoutError):  # what a survivor still holds is unmounted lazily below
            wait_for(lambda: not any(alive(pid) for pid in [*doomed, *shims]), "the node's containers to die", 10)
        for mount_point in self.mounts():
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True)

    def mounts(self) -> list[str]:
        """Mount points under the lab directory, deepest first."""
        prefix = str(self.state) + "/"
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
        return sorted(set(points), key=lambda p: p.count("/"), reverse=True)

    def shims(self) -> list[int]:
        """The shims (one per pod sandbox) of this lab's containerd."""
        return [pid for pid, argv in _processes()
                if argv[:1] and Path(argv[0]).name == SHIM and _arg_after(argv, "-address") == str(self.socket)]


def _same_image(held: str, reference: str) -> bool:
    """Whether containerd's name ``held`` is ``reference`` or the ``repo@digest`` name of its repository."""
    if held == reference:
        return True
    repository = reference.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return held.startswith(repository + "@")


def _processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found.append((int(entry.name), [part.decode(errors="replace") for part in argv if part]))
    return found


def _arg_after(argv: list[str], flag: str) -> str | None:
    for index, value in enumerate(argv[:-1]):
        if value == flag:
            return argv[index + 1]
    return None


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = set(), [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _toml(document: dict, prefix: str = "") -> str:
    """Enough TOML for containerd's configuration: scalars, lists of scalars, nested tables."""
    lines, tables = [], []
    for key, value in document.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f'{prefix}.{_toml_key(key)}' if prefix else _toml_key(key)
        text += f"\n[{name}]\n" + _toml(value, name)
    return text


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))
