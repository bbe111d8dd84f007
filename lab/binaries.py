"""Build the lab's Go programs from pinned Go modules: Kubernetes, etcd and kubectl; cosign; the distribution registry.

Each program set has its own folder with a ``go.mod`` pinning one release
(``lab/kube``, ``lab/cosign``, ``lab/distribution``). Binaries are cached
outside the clone under ``~/.cache/image-clone/bin/<key>/``; the key hashes
go.mod and go.sum, so a changed pin rebuilds and an unchanged one is instant.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LAB = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GoBuild:
    """Programs built from one pinned Go module folder: ``packages`` go to ``binaries``, in one ``go build``."""

    folder: Path
    module: str  # the pinned module whose version names the cache entry
    binaries: tuple[str, ...]
    packages: tuple[str, ...]
    minutes: int  # a first build's rough duration on 2 cores, to tell the person waiting
    ldflags: Callable[[str], list[str]] = field(default=lambda version: [])

    def version(self) -> str:
        """The release of ``module`` pinned in the folder's go.mod."""
        pattern = rf"^\s*(?:require\s+)?{re.escape(self.module)} (v\S+)$"
        match = re.search(pattern, (self.folder / "go.mod").read_text(), re.M)
        if not match:
            raise RuntimeError(f"{self.folder / 'go.mod'} does not pin {self.module}")
        return match.group(1)

    def cache_dir(self) -> Path:
        root = Path(os.environ.get("IMAGECLONE_CACHE", Path.home() / ".cache" / "image-clone"))
        pin = hashlib.sha256((self.folder / "go.mod").read_bytes() + (self.folder / "go.sum").read_bytes())
        prefix = "" if self.folder.name == "kube" else f"{self.folder.name}-"
        return root / "bin" / f"{prefix}{self.version()}-{pin.hexdigest()[:12]}"

    def ensure(self, log=sys.stderr) -> Path:
        """The directory holding every binary of this build, building them first if needed."""
        target = self.cache_dir()
        if all((target / name).is_file() for name in self.binaries):
            return target
        if shutil.which("go") is None:
            raise RuntimeError(f"the lab needs the Go toolchain to build {self.binaries[0]}; 'go' is not on PATH")
        print(f"building {', '.join(self.binaries)} {self.version()} from Go modules "
              f"(first time only: about {self.minutes} minutes on 2 cores) ...", file=log, flush=True)
        started = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        flags = ["-s", "-w", *self.ldflags(self.version())]
        try:
            subprocess.run(
                ["go", "build", "-trimpath", f"-ldflags={' '.join(flags)}", "-o", f"{staging}/", *self.packages],
                cwd=self.folder,
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


def _kubernetes_ldflags(version: str) -> list[str]:
    """Stamp the release into the binaries, as Kubernetes' own build does, so /version tells it."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return [f"-X {package}.{name}={value}" for package in ("k8s.io/component-base/version",
                                                            "k8s.io/client-go/pkg/version")
            for name, value in stamps.items()]


def _cosign_ldflags(version: str) -> list[str]:
    """Stamp the release, so ``cosign version`` tells it."""
    return [f"-X sigs.k8s.io/release-utils/version.gitVersion={version}"]


KUBE = GoBuild(LAB / "kube", "k8s.io/kubernetes",
               ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "etcd", "kubectl"),
               ("./cmd/...",), minutes=5, ldflags=_kubernetes_ldflags)
COSIGN = GoBuild(LAB / "cosign", "github.com/sigstore/cosign/v2", ("cosign",),
                 ("github.com/sigstore/cosign/v2/cmd/cosign",), minutes=30, ldflags=_cosign_ldflags)
DISTRIBUTION = GoBuild(LAB / "distribution", "github.com/distribution/distribution/v3", ("registry",),
                       ("github.com/distribution/distribution/v3/cmd/registry",), minutes=9)

# The Kubernetes build's names, as the lab and its tests know them.
GO_MODULE = KUBE.folder
COMPONENTS = KUBE.binaries


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in the lab's go.mod."""
    return KUBE.version()


def cache_dir() -> Path:
    return KUBE.cache_dir()


def ensure_binaries(log=sys.stderr) -> Path:
    """Return the directory holding every lab Kubernetes binary, building them first if needed."""
    return KUBE.ensure(log)


def ensure_cosign(log=sys.stderr) -> Path:
    """The path of the pinned cosign, built first if needed."""
    return COSIGN.ensure(log) / "cosign"


def ensure_distribution_registry(log=sys.stderr) -> Path:
    """The path of the pinned distribution v3 ``registry``, built first if needed."""
    return DISTRIBUTION.ensure(log) / "registry"
