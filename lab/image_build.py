"""The controller's image, built offline from deploy/Containerfile: what `make image` runs.

No public image registry is reachable here and a build container reaches no package index, so
the build's inputs are made on the host and cached under ``~/.cache/image-clone`` (lab/cache.py):

* ``image-base/<key>/base.tar``: Debian 12 made with mmdebstrap, holding the Debian packages the
  Containerfile wants (an OCI archive; key: suite, packages, mmdebstrap's version);
* ``wheelhouse/<key>/``: the wheels of deploy/requirements-image.txt (key: that file);
* ``image/<key>/image.tar``: the controller image (key: the Containerfile, every file it copies,
  and the two above), built with buildah (chroot isolation, vfs storage, no network) and
  described in ``build.json`` (digest, size, layers, build time).

``python -m lab.image_build`` builds whatever is missing and, with ``--push``, pushes the image
to the lab's source registry, from where the lab's node pulls it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from lab.cache import cache_root, cached, digest_of

REPO = Path(__file__).resolve().parent.parent
CONTAINERFILE = REPO / "deploy" / "Containerfile"
REQUIREMENTS = REPO / "deploy" / "requirements-image.txt"
# What the Containerfile copies from the build context; nothing else goes into it.
CONTEXT = ("galaxy.yml", "README.md", "meta", "plugins", "playbooks", "docs", "controller",
           "deploy/Containerfile", "deploy/requirements-image.txt")
SUITE = "bookworm"
MIRRORS = (f"deb http://deb.debian.org/debian {SUITE} main",
           f"deb http://deb.debian.org/debian {SUITE}-updates main",
           f"deb http://deb.debian.org/debian-security {SUITE}-security main")
# The Containerfile's own list: with all of them in the base its apt step does nothing.
BASE_PACKAGES = ("python3", "python3-venv", "skopeo", "ca-certificates", "tini")
# Debian 12's Python, the only one the image runs.
WHEEL_TARGET = ("--only-binary=:all:", "--python-version=3.11", "--implementation=cp", "--abi=cp311",
                *(f"--platform={tag}_x86_64" for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28",
                                                         "manylinux_2_34", "manylinux_2_36")))
IMAGE_NAME = "image-clone/controller"
IMAGE_TAG = "0.1.0"


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-3000:]}")
    return result


class Buildah:
    """buildah with a private, throwaway storage (vfs: no overlay mounts needed) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.options = [f"--root={root / 'storage'}", f"--runroot={root / 'run'}", "--storage-driver=vfs"]

    def __call__(self, *args: str, offline: bool = False) -> str:
        # chroot isolation shares the caller's network, so "offline" runs buildah itself in a new network
        # namespace that has nothing but a loopback interface that is down.
        isolate = ["unshare", "--net"] if offline else []
        return _run(*isolate, "buildah", *self.options, *args).stdout.strip()


def _throwaway_buildah(work: Path) -> Buildah:
    work.mkdir(parents=True, exist_ok=True)
    return Buildah(Path(tempfile.mkdtemp(prefix="buildah-", dir=work)))


def _discard(buildah: Buildah) -> None:
    # vfs layers are plain directories owned by many users; rm -rf is the reliable way.
    root = Path(buildah.options[0].split("=", 1)[1]).parent
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def base_key() -> str:
    version = _run("mmdebstrap", "--version").stdout.split()[-1] if shutil.which("mmdebstrap") else "missing"
    return f"{SUITE}-{digest_of(*BASE_PACKAGES, *MIRRORS, version)}"


def ensure_base(log=sys.stderr) -> Path:
    """The OCI archive of the Debian base, made with mmdebstrap first if needed."""
    def build(staging: Path) -> None:
        rootfs = staging / "rootfs.tar"
        _run("mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             "--aptopt=APT::Install-Recommends \"false\"",
             # Documentation, manuals and translations: nobody reads them in a controller's image.
             "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
             "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
             "--dpkgopt=path-exclude=/usr/share/info/*",
             SUITE, str(rootfs), *MIRRORS)
        buildah = _throwaway_buildah(staging.parent)
        try:
            container = buildah("from", "scratch")
            buildah("add", container, str(rootfs), "/")
            buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--cmd", "/bin/bash", "--os", "linux", "--arch", "amd64", container)
            buildah("commit", "--format=oci", "--rm", container, f"oci-archive:{staging / 'base.tar'}")
        finally:
            _discard(buildah)
        rootfs.unlink()

    return cached("image-base", base_key(), build, expect=["base.tar"], log=log,
                  what=f"the Debian {SUITE} base ({', '.join(BASE_PACKAGES)}) with mmdebstrap") / "base.tar"


def ensure_wheelhouse(log=sys.stderr) -> Path:
    """The directory of wheels deploy/requirements-image.txt names, downloaded first if needed."""
    def build(staging: Path) -> None:
        _run(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             f"--dest={staging}", *WHEEL_TARGET, "-r", str(REQUIREMENTS))

    return cached("wheelhouse", digest_of(REQUIREMENTS), build, log=log,
                  what="the image's wheelhouse from deploy/requirements-image.txt")


def _context_files() -> list[Path]:
    """Every file the build context holds: the tracked ones of ``CONTEXT`` (no stray local files)."""
    listed = _run("git", "ls-files", "-z", "--", *CONTEXT, cwd=REPO).stdout.split("\0")
    return [REPO / name for name in listed if name and (REPO / name).is_file()]


def image_key() -> str:
    files = _context_files()
    names = [str(path.relative_to(REPO)) for path in files]
    return digest_of(base_key(), digest_of(REQUIREMENTS), *names, *files)


def ensure_image(log=sys.stderr) -> Path:
    """The directory holding ``image.tar`` (an OCI archive) and ``build.json``, building them first if needed."""
    def build(staging: Path) -> None:
        base, wheels = ensure_base(log), ensure_wheelhouse(log)
        context = staging / "context"
        for path in _context_files():
            target = context / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (context / "deploy" / "wheelhouse").mkdir(parents=True, exist_ok=True)
        for wheel in wheels.glob("*.whl"):
            shutil.copy2(wheel, context / "deploy" / "wheelhouse" / wheel.name)
        buildah = _throwaway_buildah(staging.parent)
        started = time.monotonic()
        try:
            # No network at all: the proof that an offline build needs nothing but its inputs.
            buildah("bud", "--isolation=chroot", "--layers=false",
                    "--build-arg", f"BASE_IMAGE=oci-archive:{base}", "--build-arg", "PIP_NO_INDEX=1",
                    "-f", str(context / "deploy" / "Containerfile"), "-t", f"{IMAGE_NAME}:{IMAGE_TAG}", str(context),
                    offline=True)
            seconds = time.monotonic() - started
            reference = f"{IMAGE_NAME}:{IMAGE_TAG}"
            # Compressed as a registry would serve it.
            buildah("push", "--compression-format=gzip", reference, f"oci-archive:{staging / 'image.tar'}:{reference}")
        finally:
            _discard(buildah)
        shutil.rmtree(context)
        (staging / "build.json").write_text(json.dumps(describe(staging / "image.tar") | {
            "build_seconds": round(seconds, 1)}, indent=2))

    return cached("image", image_key(), build, expect=["image.tar", "build.json"], log=log,
                  what="the controller image with buildah (offline)")


def describe(archive: Path) -> dict:
    """Digest, layer count and sizes (compressed, as pulled; uncompressed, as unpacked) of an OCI archive."""
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> bytes:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return member.read()

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(blob(manifest_digest))
        config = json.loads(blob(manifest["config"]["digest"]))
        unpacked = 0
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}"),
                              mode="r|*") as content:
                unpacked += sum(member.size for member in content if member.isfile())
    return {"digest": manifest_digest, "layers": len(manifest["layers"]),
            "compressed_bytes": sum(layer["size"] for layer in manifest["layers"]),
            "unpacked_bytes": unpacked, "user": config.get("config", {}).get("User", ""),
            "entrypoint": config.get("config", {}).get("Entrypoint", [])}


def push(lab, directory: Path | None = None) -> str:
    """Push the built image to the lab's source registry; return its reference by digest."""
    archive = (directory or ensure_image()) / "image.tar"
    repository = f"{lab.config.source_registry}/{IMAGE_NAME}"
    lab.skopeo("copy", "--quiet", f"--dest-cert-dir={lab.certs_dir}", f"oci-archive:{archive}",
               f"docker://{repository}:{IMAGE_TAG}")
    digest = lab.skopeo("inspect", "--format={{.Digest}}", f"--cert-dir={lab.certs_dir}",
                        f"docker://{repository}:{IMAGE_TAG}").strip()
    return f"{repository}@{digest}"


def main(argv: list[str]) -> int:
    if argv not in ([], ["--push"]):
        print("usage: python -m lab.image_build [--push]", file=sys.stderr)
        return 2
    directory = ensure_image()
    built = json.loads((directory / "build.json").read_text())
    print(f"image: {directory / 'image.tar'}\n  digest {built['digest']}, {built['layers']} layers, "
          f"{built['compressed_bytes'] / 2**20:.1f} MiB compressed, {built['unpacked_bytes'] / 2**20:.1f} MiB "
          f"unpacked, user {built['user']}, built in {built['build_seconds']}s "
          f"(cache: {cache_root()})")
    if argv == ["--push"]:
        from lab.lab import Lab

        print(f"pushed: {push(Lab(), directory)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
