"""Signatures, attestations and SBOMs travel with the image: a real cosign, real registries, real skopeo.

Images are signed and attested in the lab's source registry with a key pair,
offline; after the backup, ``cosign verify --key`` and ``cosign
verify-attestation`` run against the backup reference a workload is rewritten
to, and must fail against a backup made with ``referrers=False``. Images in a
registry serving the OCI 1.1 referrers API are signed there the OCI 1.1 way
(no tag at all), and their backup verifies with ``cosign verify --experimental-oci11``.
"""
from __future__ import annotations

import base64
import json
import secrets
import signal
import ssl
import subprocess
import uuid

import pytest
import yaml
from faults_support import (
    engine_migration,
    isolated_lab,
    new_namespace,
    simple_deployment,
    workload_images,
)
from test_playbook_lab import run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService, BackupSettings
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.referrers import digest_tag
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.binaries import ensure_tools
from lab.controller_process import ControllerProcess
from lab.images import ImageSpec, Layer
from lab.lab import Lab, http_status
from lab.processes import free_port
from lab.referrers_registry import ReferrersRegistry
from lab.signing import Cosign
from lab.waiting import wait_for


@pytest.fixture(scope="module")
def iso(request, tmp_path_factory) -> Lab:
    return isolated_lab(request, tmp_path_factory)


@pytest.fixture(scope="module")
def cosign(iso, tmp_path_factory) -> Cosign:
    return Cosign(tmp_path_factory.mktemp("cosign"), iso.ca_cert(), (iso.backup_authfile,))


def policy(iso: Lab, naming: str = "flat") -> NamingPolicy:
    # flat: one repository; nested: a prefix, under which each image gets its own repository.
    return NamingPolicy(naming, f"{iso.config.backup_registry}/signed/{uuid.uuid4().hex[:10]}")  # type: ignore[arg-type]


def service(iso: Lab, naming_policy: NamingPolicy, **settings) -> BackupService:
    store = CredentialStore.from_authfile(iso.backup_authfile)
    registry = RegistryClient(store, certs_dir=iso.certs_dir)
    return BackupService(registry, Skopeo(certs_dir=iso.certs_dir), store, naming_policy, BackupSettings(**settings))


def unique_image(iso: Lab, platforms: tuple[str, ...] = ("amd64", "arm64")) -> tuple[str, str]:
    """A fresh image (an index by default) in the source registry: its reference and its digest."""
    spec = ImageSpec(f"signed/{uuid.uuid4().hex[:10]}", "1.0", (Layer(uuid.uuid4().hex),), platforms=platforms)
    digest = iso.push_images((spec,))[spec.ref_name]
    return iso.source_image(spec.ref_name), digest


def signed_image(iso: Lab, cosign: Cosign) -> tuple[str, str]:
    image, digest = unique_image(iso)
    pinned = f"{image.rsplit(':', 1)[0]}@{digest}"
    cosign.sign(pinned)
    cosign.attest_sbom(pinned)
    assert cosign.verify(pinned).returncode == 0
    return image, digest


def source_requests(iso: Lab, image: str, mark: int) -> list:
    return iso.registry_requests("registry-source", parse_reference(image).path)[mark:]


@pytest.mark.parametrize("naming", ["flat", "nested"])
def test_the_rewritten_backup_reference_verifies_with_its_signature_and_attestation(iso, cosign, naming):
    image, digest = signed_image(iso, cosign)
    outcome = service(iso, policy(iso, naming)).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.digest, outcome.reason) == ("copied", digest, None)
    assert outcome.referrers_copied == 2  # the .sig and the .att tags
    assert outcome.backup.endswith(f"@{digest}")  # what workloads are rewritten to
    verified = cosign.verify(outcome.backup)
    assert verified.returncode == 0, verified.stderr
    payload = json.loads(verified.stdout.strip().splitlines()[0])
    assert payload[0]["critical"]["image"]["docker-manifest-digest"] == digest
    attested = cosign.verify_attestation(outcome.backup)
    assert attested.returncode == 0, attested.stderr
    statements = [json.loads(base64.b64decode(json.loads(line)["payload"]))
                  for line in attested.stdout.splitlines() if line.strip()]
    assert [statement["predicate"]["spdxVersion"] for statement in statements] == ["SPDX-2.3"]
    assert [statement["subject"][0]["digest"]["sha256"] for statement in statements] == [digest.split(":")[1]]
    backup = parse_reference(outcome.backup)
    tags = json.loads(iso.skopeo("list-tags", f"--cert-dir={iso.certs_dir}", f"--authfile={iso.backup_authfile}",
                                 f"docker://{backup.without_digest().without_tag()}"))["Tags"]
    assert {f"{digest_tag(digest)}.sig", f"{digest_tag(digest)}.att"} <= set(tags)  # where cosign looks


def test_without_referrers_the_backup_does_not_verify(iso, cosign):
    image, digest = signed_image(iso, cosign)
    outcome = service(iso, policy(iso), referrers=False).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.digest, outcome.referrers_copied) == ("copied", digest, 0)
    verified = cosign.verify(outcome.backup)
    assert verified.returncode != 0 and "no signatures found" in verified.stderr.lower(), verified.stderr
    assert cosign.verify_attestation(outcome.backup).returncode != 0


def test_a_warm_run_costs_one_tag_list_and_two_heads_per_artifact(iso, cosign):
    image, digest = signed_image(iso, cosign)
    unsigned, _ = unique_image(iso)
    naming_policy = policy(iso)
    images = {image: parse_reference(image), unsigned: parse_reference(unsigned)}
    service(iso, naming_policy).ensure_all(images)

    marks = {name: len(source_requests(iso, name, 0)) for name in images}
    backup_mark = len(iso.registry_requests("registry-backup", naming_policy.target_path))
    warm = service(iso, naming_policy).ensure_all(images)

    assert {(o.state, o.referrers_copied) for o in warm.values()} == {("present", 0)}
    # The referrers API is asked once for the registry, whichever image comes first: its 404 says it has none.
    queries = [r for name in images for r in source_requests(iso, name, marks[name]) if "/referrers/" in r.path]
    assert [r.status for r in queries if r.status != 401] == [404], queries
    unsigned_requests = [(r.method, r.path.split("/")[-2]) for r in source_requests(iso, unsigned, marks[unsigned])
                         if r.status != 401 and "/referrers/" not in r.path]
    assert unsigned_requests == [("HEAD", "manifests"), ("GET", "tags")], \
        source_requests(iso, unsigned, marks[unsigned])  # the image, then one tag list page
    signed_requests = [r for r in source_requests(iso, image, marks[image]) if r.status != 401]
    assert [r.method for r in signed_requests if "/tags/list" in r.path] == ["GET"]
    artifact_heads = [r for r in signed_requests if r.method == "HEAD" and digest_tag(digest) in r.path]
    assert len(artifact_heads) == 2
    backup_requests = [r for r in iso.registry_requests("registry-backup", naming_policy.target_path)[backup_mark:]
                       if r.status != 401]
    assert all(r.method == "HEAD" for r in backup_requests)
    assert len([r for r in backup_requests if digest_tag(digest) in r.path]) == 2


def test_a_signature_added_upstream_later_is_copied_by_a_later_run(iso, cosign, tmp_path):
    image, digest = unique_image(iso)
    naming_policy = policy(iso)
    first = service(iso, naming_policy).ensure_all({image: parse_reference(image)})[image]
    assert (first.state, first.referrers_copied) == ("copied", 0)
    assert cosign.verify(first.backup).returncode != 0

    cosign.sign(f"{image.rsplit(':', 1)[0]}@{digest}")
    later = service(iso, naming_policy).ensure_all({image: parse_reference(image)})[image]

    assert (later.state, later.referrers_copied) == ("present", 1)
    assert cosign.verify(later.backup).returncode == 0
    # A second signer's signature moves cosign's .sig tag upstream (cosign adds no second signature of the
    # same key): the backup's tag follows it, and both keys verify the backup.
    second = Cosign(tmp_path / "second-signer", iso.ca_cert(), (iso.backup_authfile,))
    assert second.verify(later.backup).returncode != 0
    second.sign(f"{image.rsplit(':', 1)[0]}@{digest}")
    again = service(iso, naming_policy).ensure_all({image: parse_reference(image)})[image]
    assert (again.state, again.referrers_copied) == ("present", 1)
    assert second.verify(again.backup).returncode == 0 and cosign.verify(again.backup).returncode == 0


def test_a_pass_over_rewritten_workloads_copies_a_signature_added_upstream_since(iso, cosign):
    """What each controller resync does for a workload it rewrote (its verified-backup memory cleared): the
    backup in use is verified, and its recorded original's referrers are looked for again upstream."""
    image, digest = unique_image(iso)
    namespace = new_namespace(iso, "signed-later")
    iso.admin_api().create(KINDS["Deployment"], namespace, simple_deployment("app", {"main": image}))
    repository = f"signed/{uuid.uuid4().hex[:10]}"
    first = engine_migration(iso, repository, [namespace]).run()
    assert [report.state for report in first.workloads] == ["rewritten"]
    [rewritten] = workload_images(iso.admin_api(), namespace)["Deployment/app"]
    assert rewritten.endswith(f"@{digest}") and cosign.verify(rewritten).returncode != 0

    cosign.sign(f"{image.rsplit(':', 1)[0]}@{digest}")
    again = engine_migration(iso, repository, [namespace]).run()

    assert [report.state for report in again.workloads] == ["unchanged"]
    assert (again.images[rewritten].state, again.images[rewritten].referrers_copied) == ("present", 1)
    assert cosign.verify(rewritten).returncode == 0
    settled = engine_migration(iso, repository, [namespace]).run()
    assert settled.images[rewritten].referrers_copied == 0


def test_a_rewrite_copies_the_signatures_a_backup_lacks_unless_this_run_checked_them(iso, cosign):
    """With workload_rewrite's settings (``copy=False``: no first copy of an image) a verified backup still gets
    the signatures it lacks before a workload is rewritten to it, unless the image is in ``referrers_checked``
    (the playbook's backup task looked this run): then the source sees no tag list."""
    image, digest = signed_image(iso, cosign)
    naming_policy, wanted = policy(iso), {image: parse_reference(image)}
    unsigned = service(iso, naming_policy, referrers=False).ensure_all(wanted)[image]
    assert unsigned.digest == digest and cosign.verify(unsigned.backup).returncode != 0

    mark = len(source_requests(iso, image, 0))
    checked = frozenset({str(wanted[image])})
    trusted = service(iso, naming_policy, copy=False, referrers_checked=checked).ensure_all(wanted)[image]
    assert (trusted.state, trusted.referrers_copied) == ("present", 0)
    assert tag_lists(iso, image, mark) == 0 and cosign.verify(trusted.backup).returncode != 0

    rewrite = service(iso, naming_policy, copy=False).ensure_all(wanted)[image]
    assert (rewrite.state, rewrite.referrers_copied) == ("present", 2), rewrite.reason
    assert tag_lists(iso, image, mark) == 1 and cosign.verify(rewrite.backup).returncode == 0


def tag_lists(iso: Lab, image: str, mark: int) -> int:
    return sum("/tags/list" in request.path and request.status != 401 for request in source_requests(iso, image, mark))


def test_the_playbook_looks_upstream_for_referrers_once_per_image_however_many_batches(iso, cosign, tmp_path):
    """Three signed images, each run by four Deployments, rewritten two per batch: a run looks for each image's
    referrers upstream once (its backup task does, and the rewrite batches trust it), the first run and a warm
    one alike; a signature added upstream between the two reaches the backup reference the workloads use."""
    namespace = new_namespace(iso, "signed-batches")
    signed = [signed_image(iso, cosign) for _ in range(3)]
    admin = iso.admin_api()
    for index, (image, _digest) in enumerate(signed):
        for replica in range(4):
            admin.create(KINDS["Deployment"], namespace, simple_deployment(f"app-{index}-{replica}", {"main": image}))
    prefix = f"signed/{uuid.uuid4().hex[:10]}"
    extra = variables(iso, [namespace], prefix, imageclone_batch_size=2)

    marks = {image: len(source_requests(iso, image, 0)) for image, _digest in signed}
    run_playbook(iso, "migrate", extra)
    assert {image: tag_lists(iso, image, marks[image]) for image, _digest in signed} == {i: 1 for i, _d in signed}
    backups = {image for images in workload_images(admin, namespace).values() for image in images}
    assert len(backups) == 3 and all(image.startswith(f"{iso.config.backup_registry}/{prefix}:") for image in backups)
    assert all(cosign.verify(backup).returncode == 0 for backup in backups)

    image, digest = signed[0]
    second = Cosign(tmp_path / "second-signer", iso.ca_cert(), (iso.backup_authfile,))
    second.sign(f"{image.rsplit(':', 1)[0]}@{digest}")
    [backup] = [backup for backup in backups if backup.endswith(f"@{digest}")]
    assert second.verify(backup).returncode != 0
    marks = {image: len(source_requests(iso, image, 0)) for image, _digest in signed}
    warm = run_playbook(iso, "migrate", extra)
    assert {image: tag_lists(iso, image, marks[image]) for image, _digest in signed} == {i: 1 for i, _d in signed}
    assert "changed=0" not in warm.stdout  # the new signature was copied
    assert second.verify(backup).returncode == 0 and cosign.verify(backup).returncode == 0


def test_the_controller_resync_copies_a_signature_added_upstream_since(iso, cosign, tmp_path):
    image, digest = unique_image(iso)
    namespace = new_namespace(iso, "signed-resync")
    admin = iso.admin_api()
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           args=["--resync=2s"]) as process:
        process.wait_leader_ready()
        admin.create(KINDS["Deployment"], namespace, simple_deployment("app", {"main": image}))
        wait_for(lambda: workload_images(admin, namespace)["Deployment/app"][0].startswith(process.repository),
                 "the Deployment rewritten")
        [rewritten] = workload_images(admin, namespace)["Deployment/app"]
        assert cosign.verify(rewritten).returncode != 0

        cosign.sign(f"{image.rsplit(':', 1)[0]}@{digest}")
        wait_for(lambda: cosign.verify(rewritten).returncode == 0, "a resync to copy the new signature", 60,
                 interval=1)
    assert "referrers copied" in process.log_path.read_text()


def test_oci_referrers_tag_schema_index_is_copied(iso, cosign):
    """An artifact attached the OCI 1.1 way to a registry without the referrers API (docker-registry 2.8): the
    client maintains the ``sha256-<hex>`` index tag; the backup gets that index and the artifact it lists."""
    image, digest = unique_image(iso)
    pinned = f"{image.rsplit(':', 1)[0]}@{digest}"
    cosign.attach_sbom_oci(pinned)
    index_tag = f"{image.rsplit(':', 1)[0]}:{digest_tag(digest)}"
    source_index = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}", f"docker://{index_tag}"))
    assert source_index["manifests"], source_index

    outcome = service(iso, policy(iso)).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.referrers_copied) == ("copied", 1), outcome.reason
    backup = parse_reference(outcome.backup)
    raw = iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}", f"--authfile={iso.backup_authfile}",
                     f"docker://{backup.without_digest().with_tag(digest_tag(digest))}")
    assert json.loads(raw) == source_index
    for referrer in source_index["manifests"]:
        artifact = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}",
                                         f"--authfile={iso.backup_authfile}",
                                         f"docker://{backup.repository}@{referrer['digest']}"))
        assert artifact["subject"]["digest"] == digest


@pytest.fixture(scope="module")
def distribution_v3(iso, tmp_path_factory):
    """The distribution v3 registry, built from the pinned Go module, on loopback with the lab's TLS certificate,
    anonymous; stopped (by its pid) at the end of the module."""
    directory = tmp_path_factory.mktemp("distribution-v3")
    address = f"127.0.0.1:{free_port()}"
    settings = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
        "http": {"addr": address, "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(iso.pki_dir / "registry.crt"), "key": str(iso.pki_dir / "registry.key")}},
    }
    config = directory / "config.yml"
    config.write_text(yaml.safe_dump(settings))
    log = directory / "registry.log"
    with open(log, "ab") as output:
        process = subprocess.Popen([str(ensure_tools() / "registry"), "serve", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        context = ssl.create_default_context(cafile=str(iso.ca_cert()))
        wait_for(lambda: http_status(f"https://{address}/v2/", context) == 200, "the distribution v3 registry", 30,
                 explain=lambda: log.read_text(errors="replace")[-2000:])
        yield address, context
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_distribution_v3_has_no_referrers_api_and_its_tag_schema_index_is_copied(iso, cosign, distribution_v3):
    """distribution v3.1 accepts OCI 1.1 artifacts (``subject``, ``artifactType``) but serves no referrers API:
    cosign then maintains the ``sha256-<hex>`` index tag, which image-clone copies."""
    address, context = distribution_v3
    seeded, _ = unique_image(iso)
    image = f"{address}/v3/{uuid.uuid4().hex[:10]}:1.0"
    iso.skopeo("copy", "--all", "--preserve-digests", f"--src-cert-dir={iso.certs_dir}",
               f"--dest-cert-dir={iso.certs_dir}", f"docker://{seeded}", f"docker://{image}")
    with RegistryClient(CredentialStore(), certs_dir=iso.certs_dir) as anonymous:
        digest = anonymous.head_manifest(parse_reference(image)).digest
    repository = image.rsplit(":", 1)[0]
    cosign.sign(f"{repository}@{digest}")
    cosign.attach_sbom_oci(f"{repository}@{digest}")
    path = repository.split("/", 1)[1]
    assert http_status(f"https://{address}/v2/{path}/referrers/{digest}", context) == 404  # no referrers API

    outcome = service(iso, policy(iso)).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.digest, outcome.referrers_copied) == ("copied", digest, 2)  # the index, .sig
    assert cosign.verify(outcome.backup).returncode == 0
    backup = parse_reference(outcome.backup)
    index = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}",
                                  f"--authfile={iso.backup_authfile}",
                                  f"docker://{backup.without_digest().with_tag(digest_tag(digest))}"))
    source_index = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}",
                                         f"docker://{repository}:{digest_tag(digest)}"))
    assert index == source_index and len(index["manifests"]) == 1
    assert index["manifests"][0]["artifactType"].endswith("sbom.v1+json")


@pytest.fixture(scope="module")
def referrers_api(iso):
    """go-containerregistry's registry, which serves the referrers API: a client pushing there writes no tag."""
    with ReferrersRegistry(iso) as registry:
        yield registry


def api_signed_image(iso: Lab, cosign: Cosign, registry: ReferrersRegistry) -> tuple[str, str, list]:
    """A fresh index in the registry with the referrers API, signed and given an SBOM the OCI 1.1 way: its
    reference, its digest and what the API lists as referring to it."""
    seeded, digest = unique_image(iso)
    repository = f"{registry.address}/api/{uuid.uuid4().hex[:10]}"
    iso.skopeo("copy", "--all", "--preserve-digests", f"--src-cert-dir={iso.certs_dir}",
               f"--dest-cert-dir={iso.certs_dir}", f"docker://{seeded}", f"docker://{repository}:1.0")
    cosign.sign_oci(f"{repository}@{digest}")
    cosign.attach_sbom_oci(f"{repository}@{digest}")
    with RegistryClient(CredentialStore(), certs_dir=iso.certs_dir) as anonymous:
        listed = anonymous.referrers(parse_reference(repository), digest)
    tags = json.loads(iso.skopeo("list-tags", f"--cert-dir={iso.certs_dir}", f"docker://{repository}"))["Tags"]
    assert tags == ["1.0"] and listed is not None and len(listed) == 2  # no tag: only the API knows them
    assert cosign.verify(f"{repository}@{digest}", oci11=True).returncode == 0
    return f"{repository}:1.0", digest, list(listed)


def test_referrers_listed_by_the_api_alone_are_copied_and_verify_from_the_backup(iso, cosign, referrers_api):
    """The backup registry (docker-registry 2.8) has no referrers API: the artifacts are pushed by digest and
    listed in the backup's ``sha256-<hex>`` index tag, where ``cosign verify --experimental-oci11`` finds them."""
    image, digest, listed = api_signed_image(iso, cosign, referrers_api)

    outcome = service(iso, policy(iso)).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.digest, outcome.referrers_copied) == ("copied", digest, 2), outcome.reason
    verified = cosign.verify(outcome.backup, oci11=True)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout.strip().splitlines()[0])[0]["critical"]["image"]["docker-manifest-digest"] \
        == digest
    backup = parse_reference(outcome.backup)
    index = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}",
                                  f"--authfile={iso.backup_authfile}",
                                  f"docker://{backup.without_digest().with_tag(digest_tag(digest))}"))
    assert sorted(index["manifests"], key=lambda entry: entry["digest"]) == \
        sorted(listed, key=lambda entry: entry["digest"])
    for entry in listed:  # byte for byte: the digest the API listed is the backup's
        raw = iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}", f"--authfile={iso.backup_authfile}",
                         f"docker://{backup.repository}@{entry['digest']}")
        assert json.loads(raw)["subject"]["digest"] == digest


def test_without_referrers_an_api_signed_backup_does_not_verify(iso, cosign, referrers_api):
    image, digest, _ = api_signed_image(iso, cosign, referrers_api)
    outcome = service(iso, policy(iso), referrers=False).ensure_all({image: parse_reference(image)})[image]

    assert (outcome.state, outcome.digest, outcome.referrers_copied) == ("copied", digest, 0)
    assert cosign.verify(outcome.backup, oci11=True).returncode != 0


def test_a_signature_added_through_the_api_later_joins_the_backup_index(iso, cosign, referrers_api, tmp_path):
    """The backup's index tag keeps what it lists and gets the new artifact; a warm run then asks the source
    one referrers query and one tag list beside the image's HEAD, and the backup one GET of its index."""
    image, digest, _ = api_signed_image(iso, cosign, referrers_api)
    naming_policy = policy(iso)
    first = service(iso, naming_policy).ensure_all({image: parse_reference(image)})[image]
    assert first.referrers_copied == 2
    second = Cosign(tmp_path / "second-signer", iso.ca_cert(), (iso.backup_authfile,))
    second.sign_oci(f"{image.rsplit(':', 1)[0]}@{digest}")

    later = service(iso, naming_policy).ensure_all({image: parse_reference(image)})[image]

    assert (later.state, later.referrers_copied) == ("present", 1), later.reason
    backup = parse_reference(later.backup)
    index = json.loads(iso.skopeo("inspect", "--raw", f"--cert-dir={iso.certs_dir}",
                                  f"--authfile={iso.backup_authfile}",
                                  f"docker://{backup.without_digest().with_tag(digest_tag(digest))}"))
    assert len(index["manifests"]) == 3
    assert second.verify(later.backup, oci11=True).returncode == 0

    backup_mark = len(iso.registry_requests("registry-backup", naming_policy.target_path))
    warm_service = service(iso, naming_policy)
    warm = warm_service.ensure_all({image: parse_reference(image)})[image]

    assert (warm.state, warm.referrers_copied) == ("present", 0)
    assert warm_service.registry.request_counts()[referrers_api.address] == 3  # HEAD, referrers, tag list
    backup_requests = [(r.method, r.path.split("/")[-2]) for r in iso.registry_requests(
        "registry-backup", naming_policy.target_path)[backup_mark:] if r.status != 401]
    # The image's HEAD, the referrers query that finds no API (once per registry), the index tag's GET.
    assert backup_requests == [("HEAD", "manifests"), ("GET", "referrers"), ("GET", "manifests")], backup_requests
