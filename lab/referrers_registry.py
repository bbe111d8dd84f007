"""A registry that serves the OCI 1.1 referrers API, beside the lab's (which serve none).

go-containerregistry's registry (``lab/referrers``, built by ``lab.binaries.ensure_referrers_registry``),
in memory, anonymous, as the lab's daemon ``referrers-api`` on a free loopback port with the lab's TLS
certificate: a client pushing an artifact with a ``subject`` there writes no ``sha256-<hex>`` index tag, the
registry lists it under ``GET /v2/<name>/referrers/<digest>``. Its content lives as long as the process.
"""
from __future__ import annotations

import ssl

from lab.binaries import ensure_referrers_registry
from lab.lab import Lab, http_status
from lab.pki import CertificateAuthority
from lab.processes import free_port
from lab.waiting import wait_for

NAME = "referrers-api"


class ReferrersRegistry:
    """The registry with the referrers API in ``lab``, running inside ``with``."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.address = f"127.0.0.1:{free_port()}"
        self.context = ssl.create_default_context(cafile=str(lab.ca_cert()))

    def __enter__(self) -> ReferrersRegistry:
        tls = CertificateAuthority(self.lab.pki_dir).issue("registry", "lab-registry")
        self.lab.daemons.start(NAME, [str(ensure_referrers_registry()), f"--address={self.address}",
                                      f"--cert={tls.cert}", f"--key={tls.key}"])
        try:
            wait_for(lambda: http_status(f"https://{self.address}/v2/", self.context) == 200,
                     "the registry with the referrers API", 30, explain=lambda: self.lab.daemons.log_tail(NAME))
        except BaseException:
            self.lab.daemons.stop(NAME)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.lab.daemons.stop(NAME)
