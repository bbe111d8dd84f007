"""Sign, attest and verify lab images with a real cosign, offline: a key pair, no transparency log.

cosign is built from the pinned Go module in ``lab/cosign`` (``lab.binaries.ensure_cosign``).
It trusts the lab's CA through ``SSL_CERT_FILE`` and reads registry logins from a
``config.json`` in a private ``DOCKER_CONFIG`` directory, never from argv; the key's
password travels in ``COSIGN_PASSWORD``. Nothing reaches a public sigstore service:
signatures and attestations are not uploaded to a transparency log
(``--tlog-upload=false``) and verification skips it (``--insecure-ignore-tlog``).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

from lab.binaries import ensure_cosign
from lab.pki import write_private

# A small SPDX document: what `cosign attest --type spdxjson` wraps in an in-toto statement.
SBOM_TYPE = "spdxjson"


class CosignError(RuntimeError):
    """A cosign command failed; carries its output (never a password: they are only in the environment)."""


class Cosign:
    """One signer: a key pair under ``directory`` and the registry logins of ``authfiles``."""

    def __init__(self, directory: Path, ca_cert: Path, authfiles: tuple[Path, ...] = ()) -> None:
        self.binary = ensure_cosign()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_urlsafe(16)
        self.docker_config = self.directory / "docker"
        self.docker_config.mkdir(mode=0o700, exist_ok=True)
        auths: dict = {}
        for authfile in authfiles:
            auths.update(json.loads(Path(authfile).read_text()).get("auths", {}))
        write_private(self.docker_config / "config.json", json.dumps({"auths": auths}).encode())
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.directory),
            "SSL_CERT_FILE": str(ca_cert),
            "DOCKER_CONFIG": str(self.docker_config),
            "COSIGN_PASSWORD": self.password,
            "TUF_ROOT": str(self.directory / "tuf"),
            "SIGSTORE_NO_CACHE": "true",
        }
        self.run("generate-key-pair", cwd=self.directory)
        self.private_key = self.directory / "cosign.key"
        self.public_key = self.directory / "cosign.pub"

    def run(self, *args: str, cwd: Path | None = None, check: bool = True,
            experimental: bool = False) -> subprocess.CompletedProcess:
        env = {**self.env, "COSIGN_EXPERIMENTAL": "1"} if experimental else self.env
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=env,
                                cwd=cwd or self.directory, stdin=subprocess.DEVNULL, timeout=300)
        if check and result.returncode != 0:
            raise CosignError(f"cosign {args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result

    def sign(self, image: str) -> None:
        """Sign ``image`` (pinned by digest) into cosign's ``sha256-<digest>.sig`` tag."""
        self.run("sign", f"--key={self.private_key}", "--tlog-upload=false", "--yes", image)

    def sign_oci(self, image: str) -> None:
        """Sign ``image`` the OCI 1.1 way: a manifest whose ``subject`` is the image, pushed by digest, no
        ``.sig`` tag; a registry without the referrers API gets the ``sha256-<digest>`` index tag."""
        self.run("sign", f"--key={self.private_key}", "--tlog-upload=false", "--yes",
                 "--registry-referrers-mode=oci-1-1", image, experimental=True)

    def attest_sbom(self, image: str, name: str = "lab-image") -> None:
        """Attach a signed SPDX SBOM attestation to ``image`` (its ``sha256-<digest>.att`` tag)."""
        sbom = self.directory / f"sbom-{secrets.token_hex(4)}.json"
        sbom.write_text(json.dumps({
            "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
            "documentNamespace": f"https://image-clone.example/spdx/{name}",
            "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: image-clone-lab"]},
            "packages": [{"name": name, "SPDXID": "SPDXRef-Package", "downloadLocation": "NOASSERTION"}],
        }))
        self.run("attest", f"--key={self.private_key}", f"--type={SBOM_TYPE}", f"--predicate={sbom}",
                 "--tlog-upload=false", "--yes", image)

    def attach_sbom_oci(self, image: str, name: str = "attached") -> None:
        """Attach an (unsigned) SPDX SBOM to ``image`` the OCI 1.1 way: a manifest whose ``subject`` is the image,
        pushed by digest; a registry without the referrers API gets the ``sha256-<digest>`` index tag."""
        sbom = self.directory / f"sbom-{secrets.token_hex(4)}.spdx.json"
        sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": name}))
        self.run("attach", "sbom", f"--sbom={sbom}", "--type=spdx", "--registry-referrers-mode=oci-1-1", image,
                 experimental=True)

    def verify(self, image: str, *, oci11: bool = False) -> subprocess.CompletedProcess:
        """``cosign verify --key`` of ``image``, not raising: the caller looks at the return code. ``oci11``:
        the signature is looked up as an OCI 1.1 referrer (the referrers API, else the index tag), not a tag."""
        oci = ("--experimental-oci11",) if oci11 else ()
        return self.run("verify", f"--key={self.public_key}", "--insecure-ignore-tlog=true", *oci, image,
                        check=False)

    def verify_attestation(self, image: str) -> subprocess.CompletedProcess:
        return self.run("verify-attestation", f"--key={self.public_key}", f"--type={SBOM_TYPE}",
                        "--insecure-ignore-tlog=true", image, check=False)
