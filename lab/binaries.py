"""Build the lab's Kubernetes components, etcd and kubectl from the pinned Go module.

Binaries are cached outside the clone under ``~/.cache/image-clone/bin/<key>/``;
the key hashes go.mod and go.sum, so a changed pin rebuilds and an unchanged one
is instant.
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
from pathlib import Path

GO_MODULE = Path(__file__).resolve().parent / "kube"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "etcd", "kubectl")


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in the lab's go.mod."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$", (GO_MODULE / "go.mod").read_text(), re.M)
    if not match:
        raise RuntimeError(f"{GO_MODULE / 'go.mod'} does not pin k8s.io/kubernetes")
    return match.group(1)


def cache_dir() -> Path:
    root = Path(os.environ.get("IMAGECLONE_CACHE", Path.home() / ".cache" / "image-clone"))
    pin = hashlib.sha256((GO_MODULE / "go.mod").read_bytes() + (GO_MODULE / "go.sum").read_bytes())
    return root / "bin" / f"{kubernetes_version()}-{pin.hexdigest()[:12]}"


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
    """Return the directory holding every lab binary, building them first if needed."""
    target = cache_dir()
    if all((target / name).is_file() for name in COMPONENTS):
        return target
    if shutil.which("go") is None:
        raise RuntimeError("the lab needs the Go toolchain to build kube-apiserver; 'go' is not on PATH")
    print(f"building {', '.join(COMPONENTS)} {kubernetes_version()} from Go modules "
          f"(first time only: about 5 minutes on 2 cores) ...", file=log, flush=True)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        subprocess.run(
            ["go", "build", "-trimpath", f"-ldflags={_ldflags()}", "-o", f"{staging}/", "./cmd/..."],
            cwd=GO_MODULE,
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
