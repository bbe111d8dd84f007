"""A private source registry for the tests: Debian's docker-registry on loopback, TLS from the lab's CA, and an
htpasswd user of its own, unknown to the backup registry and to any auth file image-clone is given."""
from __future__ import annotations

import base64
import json
import secrets
import signal
import ssl
import subprocess
from pathlib import Path

import yaml

from lab.lab import http_status
from lab.pki import write_private
from lab.processes import free_port
from lab.waiting import wait_for

USER = "team-robot"


class PrivateRegistry:
    """Started on enter with the lab's ``seeds`` copied into it under ``team/``; stopped (by its pid) on exit."""

    def __init__(self, lab, directory: Path, seeds: tuple[str, ...]) -> None:
        self.lab = lab
        self.directory = directory
        self.seeds = seeds
        self.password = secrets.token_urlsafe(24)
        self.registry = f"127.0.0.1:{free_port()}"
        self.log = directory / "registry.log"
        self.process: subprocess.Popen | None = None

    def image(self, seed: str) -> str:
        """Where ``seed`` (``library/nginx:1.27``) is in this registry: ``<registry>/team/nginx:1.27``."""
        return f"{self.registry}/team/{seed.rsplit('/', 1)[-1]}"

    def docker_config(self) -> str:
        """The ``.dockerconfigjson`` of a pull Secret for this registry, as ``kubectl create secret`` writes it."""
        auth = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.registry: {"username": USER, "password": self.password, "auth": auth}}})

    def secret(self, name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64.b64encode(self.docker_config().encode()).decode()}}

    def secret_forms(self) -> list[str]:
        """Every spelling of the password a leak could take."""
        return [self.password, base64.b64encode(f"{USER}:{self.password}".encode()).decode().rstrip("="),
                base64.b64encode(self.docker_config().encode()).decode()[:40]]

    def __enter__(self) -> PrivateRegistry:
        self.directory.mkdir(parents=True, exist_ok=True)
        htpasswd = self.directory / "htpasswd"
        subprocess.run(["htpasswd", "-B", "-i", "-c", str(htpasswd), USER], input=self.password.encode(),
                       check=True, capture_output=True)
        settings = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "data")}},
            "http": {"addr": self.registry, "secret": secrets.token_hex(16),
                     "tls": {"certificate": str(self.lab.pki_dir / "registry.crt"),
                             "key": str(self.lab.pki_dir / "registry.key")}},
            "auth": {"htpasswd": {"realm": "team-private", "path": str(htpasswd)}},
        }
        config = self.directory / "config.yml"
        config.write_text(yaml.safe_dump(settings))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        context = ssl.create_default_context(cafile=str(self.lab.ca_cert()))
        wait_for(lambda: http_status(f"https://{self.registry}/v2/", context) == 401, "the private registry", 30,
                 explain=lambda: self.log.read_text(errors="replace")[-2000:])
        authfile = self.directory / "push-auth.json"
        write_private(authfile, json.dumps(json.loads(self.docker_config())).encode())
        for seed in self.seeds:
            self.lab.skopeo("copy", "--all", "--preserve-digests", f"--src-cert-dir={self.lab.certs_dir}",
                            f"--dest-cert-dir={self.lab.certs_dir}", f"--dest-authfile={authfile}",
                            f"docker://{self.lab.source_image(seed)}", f"docker://{self.image(seed)}")
        authfile.unlink()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
