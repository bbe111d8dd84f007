"""Build the lab's Go programs from pinned Go modules, once per pin.

Two module folders: ``kube/`` (the Kubernetes components, etcd and kubectl
at one release) and ``tools/`` (distribution v3, a second registry
implementation, and toxiproxy, a fault-injecting TCP proxy). Binaries are
cached outside the clone under ``~/.cache/image-clone/bin/<key>/``; the key
hashes go.mod and go.sum, so a changed pin rebuilds and an unchanged one is
instant.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LAB = Path(__file__).resolve().parent
GO_MODULE = LAB / "kube"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "etcd", "kubectl")


@dataclass(frozen=True)
class GoPrograms:
    """Programs built from one pinned module folder: ``packages`` to ``go build``, ``binaries`` they yield."""

    module: Path
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    label: str
    estimate: str

    def cache_dir(self, version: str) -> Path:
        root = Path(os.environ.get("IMAGECLONE_CACHE", Path.home() / ".cache" / "image-clone"))
        pin = hashlib.sha256((self.module / "go.mod").read_bytes() + (self.module / "go.sum").read_bytes())
        return root / "bin" / f"{version}-{pin.hexdigest()[:12]}"

    def ensure(self, version: str, ldflags: str = "-s -w", log=sys.stderr) -> Path:
        """The directory holding every binary, building them first if needed."""
        target = self.cache_dir(version)
        if all((target / name).is_file() for name in self.binaries):
            return target
        if shutil.which("go") is None:
            raise RuntimeError(f"the lab needs the Go toolchain to build {self.label}; 'go' is not on PATH")
        print(f"building {', '.join(self.binaries)} from Go modules (first time only: {self.estimate}) ...",
              file=log, flush=True)
        started = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            subprocess.run(
                ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{staging}/", *self.packages],
                cwd=self.module,
                check=True,
                env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"},
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        print(f"built in {time.monotonic() - started:.0f}s into {target}", file=log, flush=True)
        return target


KUBE = GoPrograms(GO_MODULE, ("./cmd/...",), COMPONENTS, "kube-apiserver", "about 5 minutes on 2 cores")
# toxiproxy's server is built from its own package; its binary takes the package's name.
TOOLS = GoPrograms(LAB / "tools", ("./cmd/...", "github.com/Shopify/toxiproxy/v2/cmd/server"),
                   ("registry", "server"), "distribution and toxiproxy", "about 2 minutes on 2 cores")


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in the lab's go.mod."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$", (GO_MODULE / "go.mod").read_text(), re.M)
    if not match:
        raise RuntimeError(f"{GO_MODULE / 'go.mod'} does not pin k8s.io/kubernetes")
    return match.group(1)


def cache_dir() -> Path:
    return KUBE.cache_dir(kubernetes_version())


def _ldflags() -> str:
    """Stamp the release into the binaries, as Kubernetes' own build does, so /version tells it."""
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{name}={value}" for name, value in stamps.items()]
    return " ".join(flags)


def ensure_binaries(log=sys.stderr) -> Path:
    """Return the directory holding every Kubernetes binary of the lab, building them first if needed."""
    return KUBE.ensure(kubernetes_version(), _ldflags(), log)


def ensure_tools(log=sys.stderr) -> Path:
    """Return the directory holding ``registry`` (distribution v3) and ``server`` (toxiproxy)."""
    return TOOLS.ensure("tools", log=log)
