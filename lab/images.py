"""Real OCI images, generated in Python, for the lab's source registry.

Images are deterministic: the same spec always yields the same bytes and so the
same digests, which keeps test expectations and benchmark runs comparable. No
container engine is involved: layers are gzip'd tarballs with fixed metadata,
written as an OCI image layout that skopeo pushes like any other source.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class Layer:
    """A filesystem layer: ``name`` seeds its content; ``size`` bytes of incompressible payload."""

    name: str
    size: int = 4096

    def tar_gz(self) -> tuple[bytes, str]:
        """Return the compressed layer and the digest of its uncompressed tar (the diff ID)."""
        payload = _pseudo_random(self.name, self.size)
        return _tar_gz(_file(f"opt/{self.name}/payload.bin", payload),
                       _file(f"etc/{self.name}.conf", self.name.encode()))


@dataclass(frozen=True)
class FastLayer(Layer):
    """A ``Layer`` generated fast whatever its size, so a test can push fresh ones of many MB every run.

    Its payload is one file of ``random`` bytes stored uncompressed in the gzip stream: they would not
    compress anyway, and the size on the wire is what ``size`` says.
    """

    def tar_gz(self) -> tuple[bytes, str]:
        payload = random.Random(self.name).randbytes(self.size)
        return _tar_gz(_file(f"opt/{self.name}/payload.bin", payload), compresslevel=0)


BUSYBOX_BINARY = Path("/bin/busybox")  # Debian's busybox-static: one static binary, every applet


@dataclass(frozen=True)
class BusyboxLayer:
    """A layer that really runs: Debian's static busybox as /bin/busybox, its applets as links.

    Its bytes follow the installed binary, so the digest is stable on one machine and
    changes with a busybox upgrade; the deterministic seeds above never use it.
    """

    applets: tuple[str, ...] = ("sh", "sleep", "httpd", "true", "echo", "cat", "wget")
    web_page: str = "image-clone lab\n"

    def tar_gz(self) -> tuple[bytes, str]:
        if not BUSYBOX_BINARY.is_file():
            raise RuntimeError(f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static (hack/bootstrap.sh does)")
        members = [_file("bin/busybox", BUSYBOX_BINARY.read_bytes(), 0o755)]
        members += [_symlink(f"bin/{applet}", "busybox") for applet in self.applets]
        members.append(_file("var/www/index.html", self.web_page.encode()))
        return _tar_gz(*members)


def _file(path: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = len(data), 0, mode
    return info, data


def _symlink(path: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(path)
    info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, target, 0, 0o777
    return info, None


def _tar_gz(*members: tuple[tarfile.TarInfo, bytes | None], compresslevel: int = 9) -> tuple[bytes, str]:
    """A gzip'd tar of ``members`` with fixed metadata, and the digest of the plain tar (the diff ID)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=compresslevel) as gz:
        gz.write(tar_bytes)
    return compressed.getvalue(), _digest(tar_bytes)


@dataclass(frozen=True)
class ImageSpec:
    """One tag in the source registry; more than one platform makes it an image index."""

    repository: str
    tag: str
    layers: tuple[Layer | BusyboxLayer, ...]
    platforms: tuple[str, ...] = ("amd64",)
    command: tuple[str, ...] = ("/bin/sh",)
    env: tuple[str, ...] = ()

    @property
    def ref_name(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class OciLayout:
    """An OCI image layout directory holding any number of tagged images."""

    root: Path
    _refs: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def _blob(self, data: bytes) -> str:
        digest = _digest(data)
        path = self.root / "blobs" / "sha256" / digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
        return digest

    def add(self, spec: ImageSpec) -> str:
        """Write ``spec`` into the layout and return the digest its tag points at."""
        manifests = [self._platform_manifest(spec, arch) for arch in spec.platforms]
        if len(manifests) == 1:
            top_type, top_bytes = OCI_MANIFEST, manifests[0][1]
        else:
            index = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": self._blob(data),
                        "size": len(data),
                        "platform": {"architecture": arch, "os": "linux"},
                    }
                    for arch, data in manifests
                ],
            }
            top_type, top_bytes = OCI_INDEX, _canonical(index)
        digest = self._blob(top_bytes)
        self._refs.append(
            {
                "mediaType": top_type,
                "digest": digest,
                "size": len(top_bytes),
                "annotations": {"org.opencontainers.image.ref.name": spec.ref_name},
            }
        )
        (self.root / "index.json").write_bytes(_canonical({"schemaVersion": 2, "manifests": self._refs}))
        return digest

    def _platform_manifest(self, spec: ImageSpec, arch: str) -> tuple[str, bytes]:
        layer_descriptors = []
        diff_ids = []
        # Each platform gets its own top layer so an index really holds distinct images,
        # while the lower layers stay shared across platforms and across images.
        for layer in (*spec.layers, Layer(f"{spec.repository}-{spec.tag}-{arch}".replace("/", "-"), 1024)):
            blob, diff_id = layer.tar_gz()
            layer_descriptors.append({"mediaType": OCI_LAYER, "digest": self._blob(blob), "size": len(blob)})
            diff_ids.append(diff_id)
        config = _canonical(
            {
                "architecture": arch,
                "os": "linux",
                "created": _CREATED,
                # Env only when set, so the deterministic seeds keep their digests.
                "config": {"Cmd": list(spec.command), **({"Env": list(spec.env)} if spec.env else {})},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self._blob(config), "size": len(config)},
            "layers": layer_descriptors,
        }
        return arch, _canonical(manifest)


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pseudo_random(seed: str, size: int) -> bytes:
    """Deterministic, incompressible bytes, so layer sizes on the wire are what they say."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


BASE = Layer("debian-base", 64 * 1024)

# The catalogue the lab seeds: names that stand in for well-known public images.
SEED_IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("library/nginx", "1.27", (BASE, Layer("nginx", 32 * 1024)), platforms=("amd64", "arm64")),
    ImageSpec("library/postgres", "16", (BASE, Layer("postgres", 48 * 1024))),
    ImageSpec("jenkins/jenkins", "lts", (BASE, Layer("jenkins", 48 * 1024))),
    ImageSpec("library/busybox", "1.36", (Layer("busybox", 16 * 1024),)),
    ImageSpec("library/redis", "7.2", (BASE, Layer("redis", 24 * 1024)), platforms=("amd64", "arm64")),
    # The disaster the product exists for: this tag is deleted upstream after workloads use it.
    ImageSpec("acme/vanishing", "1.0", (Layer("vanishing", 8 * 1024),)),
)

# Workloads reference this seed by digest rather than by tag.
DIGEST_REFERENCED = "library/redis:7.2"
VANISHING = "acme/vanishing:1.0"


def synthetic_images(count: int, multi_platform_every: int = 4) -> tuple[ImageSpec, ...]:
    """``count`` small distinct images for scale runs; every Nth is multi-platform, all share BASE."""
    return tuple(
        ImageSpec(
            f"synthetic/app{number // 50}",
            f"v{number}",
            (BASE, Layer(f"synthetic-{number}", 8 * 1024)),
            platforms=("amd64", "arm64") if multi_platform_every and number % multi_platform_every == 0 else ("amd64",),
        )
        for number in range(count)
    )


# Images that run on the lab's node (amd64): busybox-static in a layer of its own.
RUNNABLE_PATH = ("PATH=/bin",)
SLEEPER = ("sleep", "86400")


def runnable_image(repository: str, tag: str = "1.0", platforms: tuple[str, ...] = ("amd64",),
                   command: tuple[str, ...] = SLEEPER) -> ImageSpec:
    """An image whose amd64 manifest runs ``command`` with busybox; other platforms are stand-ins."""
    return ImageSpec(repository, tag, (BusyboxLayer(),), platforms=platforms, command=command, env=RUNNABLE_PATH)


def web_server_command(port: int) -> list[str]:
    """busybox httpd in the foreground on ``port`` of 127.0.0.1 (pods share the node's loopback)."""
    return ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/var/www"]


# Seeded next to SEED_IMAGES: images the node runs, in the shapes workloads use.
RUNNABLE_SEEDS: tuple[ImageSpec, ...] = (
    runnable_image("runnable/sleeper"),
    # An index whose amd64 entry is the one the node picks and runs.
    runnable_image("runnable/multiarch", platforms=("amd64", "arm64")),
    # Workloads reference this one by digest.
    runnable_image("runnable/pinned"),
    runnable_image("runnable/httpd", command=tuple(web_server_command(8080))),
    # The demo deletes this tag upstream while a workload runs it.
    runnable_image("runnable/vanishing"),
)
RUNNABLE_BY_DIGEST = "runnable/pinned:1.0"
RUNNABLE_VANISHING = "runnable/vanishing:1.0"
# The node's pod sandbox ("pause") image: imported into containerd, never pulled.
PAUSE_IMAGE = runnable_image("lab/pause", "1.0", command=("sleep", "2147483647"))
