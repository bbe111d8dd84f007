# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The backup target, the workload scope and the attributes shared by image-clone modules."""

from __future__ import annotations


class ModuleDocFragment:
    """``imageclone.backup.backup``: where and how images are backed up.

    ``imageclone.backup.backup.scope``: which workloads a module looks at.
    ``imageclone.backup.backup.attributes``: the C(idempotent) attribute, which
    ansible-core's C(action_common_attributes) does not describe.
    """

    DOCUMENTATION = r"""
options:
  backup_registry:
    description:
      - Where the backups go.
      - With O(naming=flat), the one repository that holds every backup, for example
        V(backup.example.com/ns/registry).
      - With O(naming=nested), a registry with an optional path prefix, for example
        V(backup.example.com/mirror).
    type: str
    required: true
  naming:
    description:
      - How a source image is named in the backup registry.
      - V(flat) encodes the source registry, path and tag into the tag of the one
        O(backup_registry) repository (C(nginx:1.27) becomes C(<backup_registry>:docker.io_library_nginx_1.27)).
      - V(nested) keeps the source path under the O(backup_registry) prefix
        (C(nginx:1.27) becomes C(<backup_registry>/docker.io/library/nginx:1.27)).
      - Use the same value every time for one O(backup_registry).
    type: str
    choices: [flat, nested]
    default: flat
  backup_username:
    description:
      - The user to authenticate to the backup registry as.
      - Together with O(backup_password) it takes precedence over an entry for the backup
        registry in O(backup_authfile).
      - If not set, the E(IMAGECLONE_BACKUP_USERNAME) environment variable is used.
    type: str
  backup_password:
    description:
      - The password (or token) of O(backup_username) for the backup registry.
      - If not set, the E(IMAGECLONE_BACKUP_PASSWORD) environment variable is used.
      - Never logged; skopeo receives it through a private, temporary auth file, never on its
        command line.
    type: str
  backup_authfile:
    description:
      - A docker C(config.json) or containers C(auth.json) style file with the credentials of
        the backup registry (and possibly others).
      - If not set, the E(IMAGECLONE_BACKUP_AUTHFILE) environment variable is used.
      - Credential helpers are not supported; the file must hold the credentials.
    type: path
  source_authfile:
    description:
      - An auth file (same format as O(backup_authfile)) with credentials for private source registries.
      - Registries without an entry are accessed anonymously.
    type: path
  certs_dir:
    description:
      - A directory of extra CA certificates (C(*.crt)) trusted for every registry, source and backup.
    type: path
  insecure_registries:
    description:
      - Registries (C(host[:port])) whose TLS certificate is not verified.
    type: list
    elements: str
    default: []
  pin:
    description:
      - Whether workloads are rewritten to C(<backup>:<tag>@<digest>), so that what runs is exactly
        what was verified.
      - With V(false), the tag only is written (a source referenced by digest keeps its digest anyway).
    type: bool
    default: true
  parallel:
    description:
      - How many images are checked or copied at the same time.
    type: int
    default: 8
  per_registry:
    description:
      - How many copies may run at the same time from one source registry.
    type: int
    default: 4
  copy_timeout:
    description:
      - Seconds one image copy may take before it is stopped and reported failed (with O(copier=skopeo);
        the native copier stops a transfer when a registry stays silent for the registry timeout).
    type: int
    default: 600
  retry_times:
    description:
      - How many times the copier retries a failing copy (skopeo) or a failing blob transfer (native).
    type: int
    default: 3
  copier:
    description:
      - What copies images. V(skopeo) runs one C(skopeo copy --all --preserve-digests) per image.
      - V(native) copies with the collection's own registry client, in the same process, fetching each blob
        shared by several images from the source once per run and mounting it into every other repository.
      - Both copy every platform and preserve every digest; the backup is verified by digest either way.
    type: str
    choices: [skopeo, native]
    default: native
  use_pull_secrets:
    description:
      - Whether the workloads' own pull Secrets are used for their source registries, as their pods pull with them
        (C(kubernetes.io/dockerconfigjson) and C(kubernetes.io/dockercfg) Secrets named in the pod template's
        C(imagePullSecrets) and in its ServiceAccount's).
      - Each Secret is read by name (a GET of that one object; Secrets are never listed), which needs C(get) on
        C(secrets) and C(serviceaccounts) in the workloads' namespaces.
      - An entry of O(source_authfile) (and the backup registry's own credentials) wins over a workload's Secret
        for the same registry; an image used by several workloads gets the credentials of all of them, the first
        Secret with an entry for its registry winning.
      - A Secret that is missing, unreadable or malformed is named (C(namespace/name)) in the reason of an image
        that then cannot be backed up; its content never appears anywhere.
    type: bool
    default: true
  referrers:
    description:
      - Whether what refers to an image by digest in its source repository is copied along with it, into the
        image's backup repository under the same tags, digests unchanged. That is cosign's signatures,
        attestations and SBOMs (tags C(sha256-<digest>.sig), C(.att), C(.sbom)) and the OCI 1.1 referrers
        tag schema's index (tag C(sha256-<digest>)), so that C(cosign verify) and admission policies accept the
        backup reference as they accept the original.
      - Each image costs one tag list request to find them (and two HEAD requests per artifact found), also when
        its backup is already there, so a signature added upstream later is copied by a later run.
      - An image whose referrers cannot be copied is reported V(failed), and its workloads are not rewritten; for a
        workload already using its backup, the failure is only reported (the backup keeps serving).
      - In check mode nothing is looked up or copied for them.
    type: bool
    default: true
requirements:
  - skopeo on the host the module runs on (to copy images)
"""

    SCOPE = r"""
options:
  namespaces:
    description:
      - Only look at workloads in these namespaces.
      - Every namespace when not set.
    type: list
    elements: str
  ignore_namespaces:
    description:
      - Never look at workloads in these namespaces. C(kube-system) is always ignored.
    type: list
    elements: str
    default: []
  kinds:
    description:
      - The workload kinds to look at; all of them when not set.
      - Pods, ReplicaSets and Jobs controlled by another object (a Deployment, a CronJob...) are
        skipped, their controller is handled instead.
      - A Job's pod template cannot change, so Jobs are reported (and their images backed up) but never
        rewritten.
    type: list
    elements: str
    choices: [Deployment, DaemonSet, StatefulSet, CronJob, ReplicationController, Job, ReplicaSet, Pod]
  skip_gitops:
    description:
      - Whether to leave alone workloads managed by Argo CD or Flux (they are reported as skipped).
      - When V(false), such workloads are processed and their C(managed_by) says who else manages them;
        a GitOps controller may revert the rewrite unless its source is changed too.
      - Helm releases (C(managed_by=helm)) are never skipped for this option, as Helm does not revert changes; a
        later C(helm upgrade) writes the chart's images again, so change the chart's values too.
      - The markers read for each tool are listed in the collection's C(docs/gitops.md).
    type: bool
    default: false
notes:
  - A workload annotated with C(imageclone.io/skip=true) is always skipped.
"""

    ATTRIBUTES = r"""
options: {}
attributes:
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second run reports no change.
      - This assumes that what the module reads (the cluster, the registries) has not changed in a relevant way.
"""
