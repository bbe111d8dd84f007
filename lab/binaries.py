"""Build the lab's Go programs from pinned Go modules, once per pin.

Four module folders: ``kube/`` (the Kubernetes components, etcd and kubectl
at one release), ``tools/`` (distribution v3, a second registry
implementation, and toxiproxy, a fault-injecting TCP proxy), ``cosign/``
(signing and verifying images, for the signature tests) and ``referrers/``
(go-containerregistry's registry, which serves the OCI 1.1 referrers API). Binaries are
cached outside the clone under ``~/.cache/image-clone/bin/<key>/``
(lab/cache.py); the key hashes go.mod and go.sum, so a changed pin rebuilds
and an unchanged one is instant.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lab.cache import cache_root, cached, digest_of

LAB = Path(__file__).resolve().parent
GO_MODULE = LAB / "kube"
TOOLS_MODULE = LAB / "tools"
COSIGN_MODULE = LAB / "cosign"
REFERRERS_MODULE = LAB / "referrers"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "etcd", "kubectl")
# toxiproxy's server is built from its own package; its binary takes the package's name.
TOOLS = ("registry", "server")


def pinned_version(folder: Path, module: str) -> str:
    """The release of ``module`` that ``folder``'s go.mod pins."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)$", (folder / "go.mod").read_text(), re.M)
    if not match:
        raise RuntimeError(f"{folder / 'go.mod'} does not pin {module}")
    return match.group(1)


def pin_digest(folder: Path) -> str:
    """A short hash of ``folder``'s go.mod and go.sum: a changed pin names a new cache entry."""
    return digest_of(folder / "go.mod", folder / "go.sum")


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in the lab's go.mod."""
    return pinned_version(GO_MODULE, "k8s.io/kubernetes")


def cache_key() -> str:
    """The cache entry's name: the release and a hash of go.mod and go.sum."""
    return f"{kubernetes_version()}-{pin_digest(GO_MODULE)}"


def cache_dir() -> Path:
    return cache_root() / "bin" / cache_key()


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
    def build(staging: Path) -> None:
        go_build(GO_MODULE, ["./cmd/..."], staging, _ldflags())

    return cached("bin", cache_key(), build, expect=COMPONENTS, log=log,
                  what=f"{', '.join(COMPONENTS)} {kubernetes_version()} from Go modules "
                       f"(first time only: about 5 minutes on 2 cores)")


def go_build(module: Path, packages: list[str], output: Path, ldflags: str) -> None:
    """``go build`` of ``packages`` in ``module`` into the directory ``output``: static, reproducible, and
    with the module's go.sum as the only source of truth."""
    if shutil.which("go") is None:
        raise RuntimeError(f"building {module.name} needs the Go toolchain; 'go' is not on PATH")
    subprocess.run(
        ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{output}/", *packages],
        cwd=module,
        check=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"},
    )


def ensure_tools(log=sys.stderr) -> Path:
    """Return the directory holding ``registry`` (distribution v3) and ``server`` (toxiproxy)."""
    def build(staging: Path) -> None:
        go_build(TOOLS_MODULE, ["./cmd/...", "github.com/Shopify/toxiproxy/v2/cmd/server"], staging, "-s -w")

    key = f"tools-{pin_digest(TOOLS_MODULE)}"
    return cached("bin", key, build, expect=TOOLS, log=log,
                  what="distribution v3 and toxiproxy from Go modules (first time only: about 2 minutes on 2 cores)")


def ensure_cosign(log=sys.stderr) -> Path:
    """The path of the pinned cosign, built first if needed."""
    version = pinned_version(COSIGN_MODULE, "github.com/sigstore/cosign/v2")

    def build(staging: Path) -> None:
        # The release stamped in, so ``cosign version`` tells it.
        go_build(COSIGN_MODULE, ["github.com/sigstore/cosign/v2/cmd/cosign"], staging,
                 f"-s -w -X sigs.k8s.io/release-utils/version.gitVersion={version}")

    key = f"cosign-{version}-{pin_digest(COSIGN_MODULE)}"
    return cached("bin", key, build, expect=["cosign"], log=log,
                  what=f"cosign {version} from Go modules (first time only: about 5 minutes on 2 cores)") / "cosign"


def ensure_referrers_registry(log=sys.stderr) -> Path:
    """The path of the registry serving the OCI 1.1 referrers API (go-containerregistry's), built first if needed."""
    version = pinned_version(REFERRERS_MODULE, "github.com/google/go-containerregistry")

    def build(staging: Path) -> None:
        go_build(REFERRERS_MODULE, ["."], staging, "-s -w")

    key = f"referrers-{version}-{pin_digest(REFERRERS_MODULE)}"
    what = f"go-containerregistry {version}'s registry (first time only: about a minute on 2 cores)"
    return cached("bin", key, build, expect=["referrers"], log=log, what=what) / "referrers"
