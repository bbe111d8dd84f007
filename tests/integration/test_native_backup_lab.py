"""The backup service built from options with ``copier: native``, against the lab's registries: copies
verified by digest like skopeo's, and a warm re-run that leaves the source alone wherever it can."""
from __future__ import annotations

import threading
import time
import uuid

from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions, backup_service
from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from lab.images import ImageSpec, Layer


def fresh_images(lab) -> tuple[str, dict[str, str]]:
    run = f"native/{uuid.uuid4().hex[:8]}"
    base = Layer(f"{run}-base", 64 * 1024)
    specs = (ImageSpec(f"{run}/single", "1.0", (base, Layer(f"{run}-a", 8 * 1024))),
             ImageSpec(f"{run}/index", "1.0", (base, Layer(f"{run}-b", 8 * 1024)), platforms=("amd64", "arm64")))
    digests = lab.push_images(specs)
    single, index = (lab.source_image(spec.ref_name) for spec in specs)
    pinned = f"{lab.config.source_registry}/{specs[1].repository}@{digests[specs[1].ref_name]}"
    return run, {single: single, index: index, pinned: pinned}


def test_native_copies_are_verified_and_a_warm_rerun_reads_only_the_backup_for_pinned_sources(lab):
    run, images = fresh_images(lab)
    options = BackupOptions.from_mapping({**lab.backup_options("native"), "copier": "native"})
    service = backup_service(options)
    assert isinstance(service._copier, NativeCopier)
    refs = {key: parse_reference(key) for key in images}

    cold = service.ensure_all(refs)
    assert {outcome.state for outcome in cold.values()} == {"copied"}, cold
    for key, outcome in cold.items():
        assert outcome.backup.endswith(f"@{outcome.digest}")
        if "@" in key:
            assert outcome.digest == key.rsplit("@", 1)[1]

    before = len(lab.registry_requests("registry-source", run))
    warm = backup_service(options).ensure_all(refs)
    during = lab.registry_requests("registry-source", run)[before:]
    assert {outcome.state for outcome in warm.values()} == {"present"}, warm
    manifests = [r for r in during if "/manifests/" in r.path]
    tag_lists = [r for r in during if "/tags/list" in r.path]
    queries = [r for r in during if "/referrers/" in r.path]
    # The two tags, which may have moved, and their referrers looked for again (the registry asked once whether
    # it has the referrers API: it has not); the pinned image: nothing.
    assert [r.method for r in manifests] == ["HEAD", "HEAD"] and len(tag_lists) == 2, during
    assert [r.status for r in queries] == [404] and len(during) == 5, during
    assert all("@" not in r.path and "sha256" not in r.path for r in manifests)


def blob_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("blob")]


def test_a_service_keeps_no_idle_blob_thread_between_runs(lab):
    # A long-lived service (the controller's lives as long as the process) copies in bursts: between them
    # it must not keep the blob transfers' threads waiting.
    service = backup_service(BackupOptions.from_mapping({**lab.backup_options("native"), "copier": "native"}))
    for _ in range(3):
        _, images = fresh_images(lab)
        outcomes = service.ensure_all({key: parse_reference(key) for key in images})
        assert {outcome.state for outcome in outcomes.values()} == {"copied"}, outcomes
    deadline = time.monotonic() + 10
    while blob_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert blob_threads() == []
