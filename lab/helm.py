"""The helm CLI built from the pinned Go module (lab/helm/go.mod), and deploy/ rendered from the chart.

``charts/image-clone`` is the one source of truth: deploy/ is what ``helm template`` renders from the
chart's default values (plus the Namespace, which Helm leaves to ``--create-namespace``), one file per
template, and ``deploy/optional/`` the parts a value turns on. ``python -m lab.helm render-deploy``
rewrites deploy/; a test fails when deploy/ and the chart drift apart.

helm is cached like the lab's Kubernetes binaries (lab/cache.py), keyed by its release and go.sum.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from lab.binaries import go_build, pin_digest, pinned_version
from lab.cache import cached

REPO = Path(__file__).resolve().parent.parent
GO_MODULE = Path(__file__).resolve().parent / "helm"
CHART = REPO / "charts" / "image-clone"
DEPLOY = REPO / "deploy"
RELEASE = "image-clone"
NAMESPACE = "image-clone"
# deploy/'s files, by the chart template each is rendered from; the order is kubectl's apply order.
DEPLOY_FILES = {
    "templates/namespace.yaml": "00-namespace.yaml",
    "templates/serviceaccount.yaml": "10-serviceaccount.yaml",
    "templates/clusterrole.yaml": "20-clusterrole.yaml",
    "templates/clusterrolebinding.yaml": "30-clusterrolebinding.yaml",
    "templates/leader-election-rbac.yaml": "40-leader-election-rbac.yaml",
    "templates/deployment.yaml": "50-deployment.yaml",
}
# Off by default, so not in deploy/'s kustomization: applied by hand when the value they need is used.
OPTIONAL_FILES = {
    "templates/pull-secret-binding.yaml": ("optional/pull-secret-binding.yaml", ["pullSecret.bind=true"]),
}
DEPLOY_HEADER = ("# Generated from charts/image-clone by `python -m lab.helm render-deploy`: "
                 "edit the chart, not this file.\n")


def helm_version() -> str:
    return pinned_version(GO_MODULE, "helm.sh/helm/v3")


def ensure_helm(log=sys.stderr) -> Path:
    """The path of the helm binary, built first if needed."""
    version = helm_version()

    def build(staging: Path) -> None:
        # Stamped like helm's own release build, so `helm version` and the charts' kubeVersion checks see it.
        go_build(GO_MODULE, ["helm.sh/helm/v3/cmd/helm"], staging,
                 f"-s -w -X helm.sh/helm/v3/internal/version.version={version}")

    key = f"{version}-{pin_digest(GO_MODULE)}"
    return cached("helm", key, build, expect=["helm"], what=f"helm {version} from Go modules", log=log) / "helm"


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run helm; without ``kubeconfig`` it never reaches a cluster. Its caches stay out of the user's home."""
    env = {"HOME": str(ensure_helm().parent), "HELM_CACHE_HOME": "/tmp/image-clone-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/image-clone-helm/config", "HELM_DATA_HOME": "/tmp/image-clone-helm/data",
           "PATH": "/usr/bin:/bin"}
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run([str(ensure_helm()), *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"helm {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def template(*args: str) -> dict[str, str]:
    """``helm template`` of the chart as the release deploy/ describes: template path -> rendered text."""
    rendered = helm("template", RELEASE, str(CHART), f"--namespace={NAMESPACE}", *args).stdout
    sources: dict[str, str] = {}
    for chunk in re.split(r"^---\n", rendered, flags=re.M):
        match = re.match(r"# Source: [^/]+/(\S+)\n", chunk)
        if match:
            sources[match[1]] = sources.get(match[1], "") + ("---\n" if match[1] in sources else "") + \
                chunk[match.end():]
    return sources


def rendered_deploy() -> dict[str, str]:
    """deploy/'s files as the chart renders them: relative path -> content."""
    files = {"kustomization.yaml": _kustomization()}
    sources = template("--set", "namespace.create=true")
    for source, name in DEPLOY_FILES.items():
        files[name] = DEPLOY_HEADER + sources[source]
    for source, (name, values) in OPTIONAL_FILES.items():
        settings = [f"--set={value}" for value in values]
        files[name] = DEPLOY_HEADER + template(*settings, f"--show-only={source}")[source]
    return files


def _kustomization() -> str:
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": list(DEPLOY_FILES.values())}
    usage = "# `kubectl apply -k deploy/` installs the controller; overlays add images and settings.\n"
    return DEPLOY_HEADER + usage + yaml.safe_dump(document, sort_keys=False)


def render_deploy() -> list[str]:
    """Rewrite deploy/ from the chart; return the files that changed."""
    changed = []
    for name, text in rendered_deploy().items():
        path = DEPLOY / name
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(name)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        print(ensure_helm())
    elif argv == ["render-deploy"]:
        print("\n".join(f"rewrote deploy/{name}" for name in render_deploy()) or "deploy/ is up to date")
    else:
        print("usage: python -m lab.helm build | render-deploy", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
