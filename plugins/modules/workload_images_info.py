#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_images_info
short_description: List the workloads of a cluster, their images, and the backup each image has or would get
version_added: 0.1.0
description:
  - Lists the workloads in scope (Deployments, DaemonSets, StatefulSets, CronJobs, ReplicationControllers, Jobs,
    ReplicaSets and Pods),
    every image of their containers, init containers and ephemeral containers, and what a rewrite would write.
  - With O(check_backups=true), every image's backup is looked up in the backup registry (HEAD requests only, nothing
    is ever copied), so each workload says whether it is ready to be rewritten, and if not, what blocks it.
  - A workload already rewritten whose backup was lost is not ready. Its image is V(missing), with a reason saying
    whether upstream still has the pinned digest (M(imageclone.backup.workload_rewrite) then restores it) or not (the
    workload is unprotected).
  - With O(check_backups=false), no registry is contacted at all.
  - Never changes anything.
author:
  - image-clone maintainers (!UNKNOWN)
options:
  check_backups:
    description:
      - Whether to look up each image's backup in the backup registry (HEAD requests to the source and backup
        registries, never a copy).
      - With V(false), images are V(unchecked), RV(workloads[].rewrite) is empty, and no workload with images is
        RV(workloads[].ready), as nothing was verified, not even images already pointing into the backup registry.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - imageclone.backup.connection
  - imageclone.backup.backup
  - imageclone.backup.backup.scope
  - imageclone.backup.backup.attributes
attributes:
  action_group:
    support: full
    membership:
      - imageclone.backup.all
  check_mode:
    support: full
    details:
      - This module never changes anything.
  diff_mode:
    support: N/A
    details:
      - This module never changes anything.
  idempotent:
    support: full
    details:
      - This module never changes anything.
  platform:
    platforms: posix
seealso:
  - module: imageclone.backup.image_backup
    description: Backs up RV(images).
  - module: imageclone.backup.workload_rewrite
    description: Rewrites the ready workloads to their backups.
"""

EXAMPLES = r"""
- name: What would image-clone do to the shop namespace?
  imageclone.backup.workload_images_info:
    kubeconfig: ~/.kube/prod
    namespaces: [shop]
    backup_registry: backup.example.com/platform/images
    backup_authfile: /etc/image-clone/backup-auth.json
  register: discovery

- name: Show the workloads that could not be rewritten yet, and why
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.blockers | join('; ') }}"
  loop: "{{ discovery.workloads | rejectattr('ready') }}"
  loop_control:
    label: "{{ item.key }}"

- name: List the images of every Deployment and StatefulSet without contacting any registry
  imageclone.backup.workload_images_info:
    kinds: [Deployment, StatefulSet]
    ignore_namespaces: [monitoring]
    backup_registry: backup.example.com/platform/images
    check_backups: false
  register: discovery
"""

RETURN = r"""
workloads:
  description: The workloads in scope, in discovery order (by kind, then as the API lists them).
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(Kind/namespace/name).
      type: str
      sample: Deployment/shop/web
    kind:
      description: The workload kind.
      type: str
      sample: Deployment
    namespace:
      description: The namespace.
      type: str
      sample: shop
    name:
      description: The name.
      type: str
      sample: web
    managed_by:
      description:
        - V(argocd) or V(flux) when a GitOps controller manages the workload (it may revert a rewrite).
        - V(helm) for a Helm release (a later upgrade writes the chart's images again); else V(null).
      type: str
      sample: null
    problems:
      description: What is wrong with the workload itself (a container without image, an invalid reference...).
      type: list
      elements: str
      sample: []
    images:
      description: Every container's image, init and ephemeral containers included.
      type: list
      elements: dict
      contains:
        section:
          description: V(initContainers), V(containers) or V(ephemeralContainers).
          type: str
          sample: containers
        container:
          description: The container name.
          type: str
          sample: app
        image:
          description: The image as written in the workload.
          type: str
          sample: nginx:1.27
        backup:
          description:
            - The verified backup reference (pinned unless O(pin=false)) when the backup is there; else the name the
              backup gets, without digest.
            - V(null) for an invalid image.
          type: str
          sample: backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
        digest:
          description: The digest of the backup when it is there (else the digest the image pins, if any).
          type: str
          sample: sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
        state:
          description:
            - V(present) (the backup has the source's current digest), V(missing) (not backed up yet, a lost backup, or
              gone from everywhere), V(failed) (a registry error, or no backup name can be built for it), V(unchecked)
              (O(check_backups=false)) or V(invalid) (not an image reference).
          type: str
          choices: [present, missing, failed, unchecked, invalid]
          sample: present
        reason:
          description: Why the image is not backed up, or what is wrong with it; else V(null).
          type: str
          sample: null
    rewrite:
      description:
        - The image changes a rewrite writes (or, for a workload that is not ready, would write once its other images
          are backed up). Ephemeral containers are never rewritten; images already in the backup stay as they are.
      type: list
      elements: dict
      contains:
        section:
          description: V(initContainers) or V(containers).
          type: str
          sample: containers
        container:
          description: The container name.
          type: str
          sample: app
        before:
          description: The image now.
          type: str
          sample: nginx:1.27
        after:
          description: The pinned backup reference.
          type: str
          sample: backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    ready:
      description: Whether every image is verified in the backup and the workload can be rewritten as it is.
      type: bool
      sample: true
    blockers:
      description: Why the workload is not ready, one entry per reason (empty when it is ready).
      type: list
      elements: str
      sample: ["containers 'app': image 'nginx:1.27' is not backed up (missing: ... is not backed up yet)"]
    left_to_owner:
      description:
        - The controller owner (C(Kind/name)) whose own spec makes this workload, when image-clone cannot rewrite
          that owner (a custom resource, such as a Prometheus object for its StatefulSet); else V(null).
        - Such a workload's images are backed up like any other, but the rewrite is left to that owner's
          configuration.
      type: str
      sample: Prometheus/k8s
skipped_workloads:
  description:
    - What discovery left alone (a skipped namespace has kind C(Namespace)), and why.
    - Not called C(skipped), which is Ansible's flag for a skipped task.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: The kind, or C(Namespace).
      type: str
      sample: ReplicaSet
    namespace:
      description: The namespace.
      type: str
      sample: shop
    name:
      description: The name.
      type: str
      sample: web-5d4f8c7b9
    reason:
      description: Why it was left alone.
      type: str
      sample: controlled by Deployment/web, which is handled instead
images:
  description:
    - Every distinct image of the workloads that needs a backup (images already in the backup registry, invalid ones and
      ones whose backup name cannot be built left out), as written, in order of appearance; ready to be passed to
      M(imageclone.backup.image_backup).
  returned: always
  type: list
  elements: str
  sample: [nginx:1.27, quay.io/prometheus/node-exporter:v1.8.2]
backups_in_use:
  description:
    - Every image of the workloads that already points into the backup registry, as written, with the upstream
      image a workload recorded before it was rewritten to it (C(imageclone.io/original-images)); a backup with no
      such record is left out.
    - Ready to be passed to M(imageclone.backup.image_backup) as its
      O(imageclone.backup.image_backup#module:backups_in_use), which verifies them and copies the signatures added
      upstream since.
  returned: always
  type: dict
  sample:
    ? backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    : docker.io/library/nginx:1.27
pull_secrets:
  description:
    - Per image of RV(images) whose workloads pull with Secrets, those Secrets (C(namespace/name)) in order, each
      workload's own C(imagePullSecrets) before its ServiceAccount's. Names only, never their content.
    - Ready to be passed to M(imageclone.backup.image_backup) as its
      O(imageclone.backup.image_backup#module:pull_secrets), so that private source images are copied with them.
    - Empty with O(use_pull_secrets=false).
  returned: always
  type: dict
  sample: {"registry.example.com/team/api:2.1": ["shop/team-registry"]}
"""

import traceback

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.arguments import (
    scope_fields,
)
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.module import open_workload_module
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import skipped_entry, workload_images

try:
    from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions
    from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError, KubeConfigError
    from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope, backups_in_use
    from ansible_collections.imageclone.backup.plugins.module_utils.plan import images_to_back_up, plan_workload
    from ansible_collections.imageclone.backup.plugins.module_utils.pullcredentials import (
        PullSecretReader,
        secrets_by_image,
    )
except ImportError:
    ENGINE_IMPORT_ERROR = traceback.format_exc()
else:
    ENGINE_IMPORT_ERROR = None


def describe(params):
    """The return values: discovery, then (with check_backups) one verify-only lookup of every image."""
    options = BackupOptions.from_mapping(params)
    survey = Migration.from_options(params, options, Scope.of(**scope_fields(params)),
                                    dry_run=True, copy=False, restore=False)
    found = survey.discover()
    outcomes = survey.back_up(found.workloads) if params["check_backups"] else None
    policy = survey.backups.policy
    workloads = []
    for workload in found.workloads:
        plan = plan_workload(workload, policy, outcomes or {}, pin=options.pin)
        workloads.append(workload_images(workload, plan, outcomes, policy))
    images = list(images_to_back_up(found.workloads, policy))
    secrets = secrets_by_image(PullSecretReader(survey.api), found.workloads, images)[0] if options.use_pull_secrets \
        else {}
    return {
        "workloads": workloads,
        "skipped_workloads": [skipped_entry(item) for item in found.skipped],
        "images": images,
        "backups_in_use": {image: str(original) for image, original in backups_in_use(found.workloads, policy).items()},
        "pull_secrets": {image: names for image, names in secrets.items() if names},
    }


def main():
    module = open_workload_module(
        engine_import_error=ENGINE_IMPORT_ERROR,
        check_backups={"type": "bool", "default": True},
    )
    try:
        results = describe(module.params)
    except (ValueError, KubeConfigError, KubeApiError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **results)


if __name__ == "__main__":
    main()
