"""The backup service against the lab's real registries and real skopeo."""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService, BackupSettings
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import Credential, CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from lab.images import OCI_INDEX, ImageSpec, Layer


@pytest.fixture
def policy(lab) -> NamingPolicy:
    # A repository per test keeps tests independent in the shared backup registry.
    return NamingPolicy("flat", f"{lab.config.backup_registry}/tests/{uuid.uuid4().hex[:10]}")


def service(lab, policy, credentials=None, **settings) -> BackupService:
    store = credentials or CredentialStore.from_authfile(lab.backup_authfile)
    registry = RegistryClient(store, certs_dir=lab.certs_dir)
    return BackupService(registry, Skopeo(certs_dir=lab.certs_dir), store, policy, BackupSettings(**settings))


def unique_image(lab, platforms=("amd64",)) -> str:
    """A fresh image in the source registry, so a test may delete it upstream."""
    layers = (Layer("debian-base", 64 * 1024), Layer(uuid.uuid4().hex))
    spec = ImageSpec(f"tests/{uuid.uuid4().hex[:10]}", "1.0", layers, platforms=platforms)
    lab.push_images((spec,))
    return lab.source_image(spec.ref_name)


def requests_since(lab, policy, mark: int) -> list:
    """This test's requests to the backup registry after the first ``mark`` of them."""
    return lab.registry_requests("registry-backup", policy.target_path)[mark:]


def test_multi_platform_index_arrives_whole_with_the_same_digest(lab, policy):
    image = lab.source_image("library/nginx:1.27")
    outcome = service(lab, policy).ensure_all({image: parse_reference(image)})[image]

    digest = lab.config.seeds["library/nginx:1.27"]
    assert (outcome.state, outcome.digest, outcome.reason) == ("copied", digest, None)
    assert outcome.backup.endswith(f"@{digest}")
    backup = parse_reference(outcome.backup)
    index = json.loads(lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}",
                                  f"--authfile={lab.backup_authfile}", f"docker://{backup.without_tag()}"))
    assert index["mediaType"] == OCI_INDEX
    for platform in index["manifests"]:
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
                   f"docker://{backup.repository}@{platform['digest']}")


def test_second_pass_copies_nothing_and_only_heads(lab, policy):
    images = {lab.source_image(ref): parse_reference(lab.source_image(ref))
              for ref in ("library/postgres:16", "jenkins/jenkins:lts", "library/busybox:1.36")}
    assert {o.state for o in service(lab, policy).ensure_all(images).values()} == {"copied"}

    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    second = service(lab, policy).ensure_all(images)

    assert {o.state for o in second.values()} == {"present"}
    requests = requests_since(lab, policy, mark)
    writes = [r for r in requests if r.method in ("PUT", "POST", "PATCH", "DELETE")]
    manifest_gets = [r for r in requests if r.method == "GET" and "/manifests/" in r.path]
    assert writes == [] and manifest_gets == []
    heads = [r for r in requests if r.method == "HEAD" and r.status == 200]
    assert len(heads) == len(images)


def test_digest_referenced_source_keeps_its_digest(lab, policy):
    digest = lab.config.seeds["library/redis:7.2"]
    image = f"{lab.config.source_registry}/library/redis@{digest}"
    outcome = service(lab, policy).ensure_all({image: parse_reference(image)})[image]
    assert outcome.state == "copied"
    assert outcome.backup.endswith(f"@{digest}") and outcome.digest == digest


def test_missing_upstream_image_is_reported_not_copied(lab, policy):
    image = lab.source_image("library/nginx:does-not-exist")
    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    outcome = service(lab, policy).ensure_all({image: parse_reference(image)})[image]
    assert outcome.state == "missing" and outcome.backup is None
    assert "does not exist" in outcome.reason and "nginx" in outcome.reason
    assert not [r for r in requests_since(lab, policy, mark) if r.method in ("PUT", "POST", "PATCH")]


def test_backup_keeps_serving_after_the_tag_is_deleted_upstream(lab, policy):
    image = unique_image(lab)
    first = service(lab, policy).ensure_all({image: parse_reference(image)})[image]
    lab.delete_source_tag(image.split("/", 1)[1])

    again = service(lab, policy).ensure_all({image: parse_reference(image)})[image]
    assert again.state == "present" and again.reason == "no longer exists upstream"
    assert again.backup == first.backup


def test_check_mode_reports_without_copying(lab, policy):
    image = unique_image(lab)
    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    outcome = service(lab, policy, dry_run=True).ensure_all({image: parse_reference(image)})[image]
    assert outcome.state == "copied" and outcome.reason == "check mode: would copy"
    assert all(r.method == "HEAD" for r in requests_since(lab, policy, mark))


def test_same_image_requested_at_once_is_copied_once(lab, policy):
    image = unique_image(lab, platforms=("amd64", "arm64"))
    backup = service(lab, policy)
    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    barrier = threading.Barrier(6)
    outcomes = []

    def request() -> None:
        barrier.wait()
        outcomes.append(backup.ensure(parse_reference(image)))

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({o.backup for o in outcomes}) == 1 and outcomes[0].state == "copied"
    manifest_puts = [r for r in requests_since(lab, policy, mark) if r.method == "PUT" and "/manifests/" in r.path]
    assert len(manifest_puts) == 3  # two platform manifests and the index, once


def test_credentials_never_reach_argv_or_errors(lab, policy):
    password = lab.backup_password()
    seen_on_argv: list[str] = []
    stop = threading.Event()

    def scan_proc() -> None:
        while not stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"skopeo" in cmdline:
                    seen_on_argv.append(cmdline.decode(errors="replace"))

    scanner = threading.Thread(target=scan_proc)
    scanner.start()
    try:
        images = {unique_image(lab): None for _ in range(3)}
        outcomes = service(lab, policy).ensure_all({i: parse_reference(i) for i in images})
    finally:
        stop.set()
        scanner.join()
    assert {o.state for o in outcomes.values()} == {"copied"}
    copies = [argv for argv in seen_on_argv if "\0copy\0" in argv]
    assert copies, "the scanner never saw a skopeo copy running"
    assert not [argv for argv in copies if password in argv]

    wrong = CredentialStore().with_credential(lab.config.backup_registry, Credential("imageclone", password + "x"))
    failed = service(lab, policy, credentials=wrong).ensure_all({i: parse_reference(i) for i in images})
    assert {o.state for o in failed.values()} == {"failed"}
    for outcome in failed.values():
        assert password not in outcome.reason and "imageclone" not in json.dumps(outcome.reason).replace(
            policy.target, "")


def test_authfiles_never_touch_the_disk(lab, policy, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = Counter()
    real_copy_argv = Skopeo.copy_argv

    def spy(self, source, destination, authfile):
        seen[os.readlink(authfile).split(" ", 1)[0]] += 1  # /dev/fd/N -> "/memfd:imageclone-auth.json (deleted)"
        return real_copy_argv(self, source, destination, authfile)

    monkeypatch.setattr(Skopeo, "copy_argv", spy)
    image = unique_image(lab)
    assert service(lab, policy).ensure_all({image: parse_reference(image)})[image].state == "copied"
    assert seen == Counter({"/memfd:imageclone-auth.json": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_moved_upstream_tag_never_moves_the_backup_tag(lab, policy):
    repository = f"tests/{uuid.uuid4().hex[:10]}"
    lab.push_images((ImageSpec(repository, "1.0", (Layer("first-build"),)),))
    image = lab.source_image(f"{repository}:1.0")
    first = service(lab, policy).ensure_all({image: parse_reference(image)})[image]

    lab.push_images((ImageSpec(repository, "1.0", (Layer("rebuilt"),)),))  # upstream rebuilt the tag
    second = service(lab, policy).ensure_all({image: parse_reference(image)})[image]

    assert first.state == second.state == "copied"
    assert first.digest != second.digest
    first_ref, second_ref = parse_reference(first.backup), parse_reference(second.backup)
    assert first_ref.tag != second_ref.tag
    # Workloads pinned to the first backup keep a tagged, collectable-proof manifest.
    still = lab.skopeo("inspect", "--format={{.Digest}}", f"--cert-dir={lab.certs_dir}",
                       f"--authfile={lab.backup_authfile}", f"docker://{first_ref.without_digest()}")
    assert still.strip() == first.digest
