"""A second registry implementation beside the lab's: distribution v3, built from Go modules.

Two daemons of the lab, ``dist-source`` and ``dist-backup``, on free loopback
ports, with the lab's TLS certificate and the backup registry's htpasswd user
on both: a copier must work against either implementation the same way.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from lab.binaries import ensure_tools
from lab.lab import BACKUP_USER, Lab, RegistryRequest, parse_access_log
from lab.pki import CertificateAuthority, write_private
from lab.processes import free_port

NAMES = ("dist-source", "dist-backup")


class DistributionRegistries:
    """Source and backup registries running distribution v3 in ``lab``'s state directory."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.authfile = lab.state / "dist-auth.json"
        self._ports_file = lab.state / "dist-ports.json"

    @property
    def ports(self) -> dict[str, int]:
        return json.loads(self._ports_file.read_text())

    @property
    def source(self) -> str:
        return f"127.0.0.1:{self.ports['dist-source']}"

    @property
    def backup(self) -> str:
        return f"127.0.0.1:{self.ports['dist-backup']}"

    def up(self) -> DistributionRegistries:
        """Start whichever of the two is not running (the lab must be up: its CA and htpasswd are used)."""
        binary = ensure_tools() / "registry"
        if not self._ports_file.exists():
            self._ports_file.write_text(json.dumps({name: free_port() for name in NAMES}))
        tls = CertificateAuthority(self.lab.pki_dir).issue("registry", "lab-registry")
        htpasswd = self.lab.state / "registry-backup" / "htpasswd"
        for name in NAMES:
            if not self.lab.daemons.pid(name):
                self.lab.start_registry(name, str(binary), self.ports[name], tls, htpasswd)
        token = base64.b64encode(f"{BACKUP_USER}:{self.lab.backup_password()}".encode()).decode()
        write_private(self.authfile, json.dumps({"auths": {self.source: {"auth": token},
                                                           self.backup: {"auth": token}}}).encode())
        return self

    def down(self) -> None:
        for name in NAMES:
            self.lab.daemons.stop(name)

    def requests(self, name: str, repository: str | None = None) -> list[RegistryRequest]:
        """Requests ``dist-source`` or ``dist-backup`` logged so far, only those for ``repository`` when given."""
        log: Path = self.lab.daemons.log_file(name)
        requests = parse_access_log(log.read_text(errors="replace")) if log.exists() else []
        return [r for r in requests if repository is None or r.path.startswith(f"/v2/{repository}/")]
