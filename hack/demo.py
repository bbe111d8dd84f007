"""The demo on the local lab: sample workloads on public-style images, backed up and rewritten.

Until the migration playbook lands this runs the product's path by hand: copy
every image with skopeo (all platforms, digests preserved), verify the copy's
digest in the backup registry, and only then rewrite each workload to the
pinned backup reference. It ends with the disaster the product exists for: a
tag deleted upstream, still served from the backup.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.collection import import_engine  # noqa: E402

import_engine()

from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from ansible_collections.imageclone.backup.plugins.module_utils.naming import (  # noqa: E402
    NamingPolicy, backup_reference, pinned_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference  # noqa: E402
from lab.images import DIGEST_REFERENCED, SEED_IMAGES, VANISHING  # noqa: E402
from lab.lab import Lab  # noqa: E402

NAMESPACE = "demo"


def sample_workloads(lab: Lab) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(kind, name, [(container, image)]) for the demo namespace."""
    redis_by_digest = f"{lab.config.source_registry}/library/redis@{lab.config.seeds[DIGEST_REFERENCED]}"
    return [
        ("Deployment", "web", [("nginx", lab.source_image("library/nginx:1.27")),
                               ("sidecar", lab.source_image("library/busybox:1.36"))]),
        ("Deployment", "db", [("postgres", lab.source_image("library/postgres:16"))]),
        ("Deployment", "ci", [("jenkins", lab.source_image("jenkins/jenkins:lts"))]),
        ("Deployment", "cache", [("redis", redis_by_digest)]),
        ("DaemonSet", "legacy-agent", [("agent", lab.source_image(VANISHING))]),
    ]


def pod_template(name: str, containers: list[tuple[str, str]]) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}),
        spec=client.V1PodSpec(containers=[client.V1Container(name=c, image=i) for c, i in containers]),
    )


def ensure_workloads(apps: client.AppsV1Api, lab: Lab) -> None:
    core = client.CoreV1Api(apps.api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    for kind, name, containers in sample_workloads(lab):
        selector = client.V1LabelSelector(match_labels={"app": name})
        template = pod_template(name, containers)
        meta = client.V1ObjectMeta(name=name)
        try:
            if kind == "Deployment":
                apps.create_namespaced_deployment(NAMESPACE, client.V1Deployment(
                    metadata=meta, spec=client.V1DeploymentSpec(replicas=1, selector=selector, template=template)))
            else:
                apps.create_namespaced_daemon_set(NAMESPACE, client.V1DaemonSet(
                    metadata=meta, spec=client.V1DaemonSetSpec(selector=selector, template=template)))
        except ApiException as error:
            if error.status != 409:
                raise


def back_up(lab: Lab, image: str, policy: NamingPolicy) -> str:
    """Copy ``image`` to the backup registry, verify its digest, return the pinned backup reference."""
    source = parse_reference(image)
    backup = backup_reference(source, policy)
    certs = f"--cert-dir={lab.certs_dir}"
    source_digest = lab.skopeo("inspect", "--format={{.Digest}}", certs, f"docker://{image}").strip()
    lab.skopeo("copy", "--all", "--preserve-digests", "--retry-times=3", f"--src-cert-dir={lab.certs_dir}",
               f"--dest-cert-dir={lab.certs_dir}", f"--dest-authfile={lab.backup_authfile}",
               f"docker://{image}", f"docker://{backup.without_digest()}")
    copied = lab.skopeo("inspect", "--format={{.Digest}}", certs, f"--authfile={lab.backup_authfile}",
                        f"docker://{backup.without_digest()}").strip()
    if copied != source_digest:
        raise RuntimeError(f"backup of {image} has digest {copied}, source has {source_digest}")
    return pinned_reference(backup, source_digest)


def main() -> int:
    lab = Lab()
    seeds = {spec.ref_name: spec for spec in SEED_IMAGES}
    try:
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{lab.source_image(VANISHING)}")
    except RuntimeError:  # a previous demo deleted it upstream: put it back
        lab.push_images((seeds[VANISHING],))

    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))
    ensure_workloads(apps, lab)
    policy = NamingPolicy("flat", f"{lab.config.backup_registry}/imageclone/backup")

    rows, pinned = [], {}
    for kind, name, containers in sample_workloads(lab):
        read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_daemon_set
        patch = apps.patch_namespaced_deployment if kind == "Deployment" else apps.patch_namespaced_daemon_set
        current = {c.name: c.image for c in read(name, NAMESPACE).spec.template.spec.containers}
        # Every image of the workload is verified before the workload is touched.
        for _, image in containers:
            pinned.setdefault(image, back_up(lab, image, policy))
        changes = [{"name": c, "image": pinned[image]} for c, image in containers if current[c] != pinned[image]]
        if changes:
            patch(name, NAMESPACE, {"spec": {"template": {"spec": {"containers": changes}}}})
        changed = {change["name"] for change in changes}
        rows += [(f"{kind.lower()}/{name}", c, _short(lab, image), _short(lab, pinned[image]),
                  "rewritten" if c in changed else "unchanged") for c, image in containers]

    print(f"\nimage-clone demo: namespace '{NAMESPACE}' on the lab cluster "
          f"(source {lab.config.source_registry}, backup {lab.config.backup_registry})\n")
    _table(("WORKLOAD", "CONTAINER", "BEFORE (source)", "AFTER (verified backup)", "STATE"), rows)

    lab.delete_source_tag(VANISHING)
    backup = parse_reference(pinned[lab.source_image(VANISHING)])
    lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{backup.without_tag()}")
    print(f"\nUpstream just deleted {VANISHING}; daemonset/legacy-agent still pulls it from the backup "
          f"({_short(lab, str(backup))}).")
    return 0


def _short(lab: Lab, reference: str) -> str:
    """References with the lab's loopback registries named as such, digests shortened."""
    text = reference.replace(lab.config.source_registry, "<source>").replace(lab.config.backup_registry, "<backup>")
    return re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
