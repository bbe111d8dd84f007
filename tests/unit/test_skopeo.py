"""What skopeo is asked to do: argv shape, TLS flags and error classification."""
from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import Credential, CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import CopyError, Skopeo, _last_message

DIGEST = "sha256:" + "a" * 64


def test_argv_copies_all_platforms_by_digest_with_an_authfile():
    source = parse_reference(f"nginx:1.27@{DIGEST}")
    backup = parse_reference(f"backup.example.com/ns/registry:docker.io_library_nginx_1.27@{DIGEST}")
    argv = Skopeo(certs_dir=Path("/etc/certs")).copy_argv(source, backup, Path("/tmp/x/auth.json"))
    assert argv[:4] == ["skopeo", "copy", "--all", "--preserve-digests"]
    assert "--src-authfile=/tmp/x/auth.json" in argv and "--dest-authfile=/tmp/x/auth.json" in argv
    assert "--src-cert-dir=/etc/certs" in argv and "--dest-cert-dir=/etc/certs" in argv
    # skopeo refuses tag+digest: the source is copied by digest, the backup written by tag.
    assert argv[-2:] == [f"docker://docker.io/library/nginx@{DIGEST}",
                         "docker://backup.example.com/ns/registry:docker.io_library_nginx_1.27"]
    assert not any("creds" in arg for arg in argv)


def test_tls_verification_is_disabled_only_for_named_registries():
    skopeo = Skopeo(insecure_registries=frozenset({"mirror.local:5000"}))
    argv = skopeo.copy_argv(parse_reference("mirror.local:5000/app:1"), parse_reference("backup.io/r:t"), Path("/a"))
    assert "--src-tls-verify=false" in argv
    assert not any(arg.startswith("--dest-tls-verify") for arg in argv)


@pytest.mark.parametrize("stderr, message", [
    ('time="2026-11-25T18:00:00Z" level=fatal msg="initializing source docker://x: reading manifest 1.0 in '
     'x: manifest unknown"\n', "initializing source docker://x: reading manifest 1.0 in x: manifest unknown"),
    ("plain failure\n", "plain failure"),
    ("", "skopeo failed without a message"),
])
def test_last_message_strips_log_decoration(stderr, message):
    assert _last_message(stderr) == message


def test_a_missing_binary_is_a_clear_copy_error():
    skopeo = Skopeo(binary="skopeo-that-does-not-exist")
    store = CredentialStore().with_credential("backup.io", Credential("u", "p"))
    with pytest.raises(CopyError, match="skopeo is not installed"):
        skopeo.copy(parse_reference("nginx:1"), parse_reference("backup.io/r:t"), store)


@pytest.mark.parametrize("stderr, transient", [
    ('msg="trying to reuse blob sha256:0d at destination: failed to read from destination repository x: '
     '500 (Internal Server Error)"', True),
    ('msg="writing manifest: 503 (Service Unavailable)"', True),
    ('msg="reading manifest 1.0 in x: manifest unknown"', False),
    ('msg="pinging container registry x: connect: connection refused"', False),
])
def test_only_a_registry_server_error_is_transient(tmp_path, stderr, transient):
    fake = tmp_path / "skopeo"
    fake.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    fake.chmod(0o755)
    store = CredentialStore().with_credential("backup.io", Credential("u", "p"))
    with pytest.raises(CopyError) as failed:
        Skopeo(binary=str(fake)).copy(parse_reference("nginx:1"), parse_reference("backup.io/r:t"), store)
    assert failed.value.transient is transient
