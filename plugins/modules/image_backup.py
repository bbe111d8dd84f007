#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_backup
short_description: Copy container images into a backup registry and verify every copy by digest
version_added: 0.1.0
description:
  - Makes sure every image of O(images) is in the backup registry, under the name the O(naming) scheme gives it,
    with exactly the digest the source has now.
  - An image whose backup already has that digest costs two HEAD requests and no copy (one, on the backup, when the
    image is referenced by digest). Otherwise it is copied by O(copier) (every platform, digests preserved) and the
    copy is verified by a HEAD of the backup.
  - Images are processed in parallel (O(parallel), at most O(per_registry) copies per source registry at a time),
    so pass every image in one task rather than looping over images.
  - An image already pointing into the backup registry is only verified, never copied again.
  - A tag of the backup registry is never moved once written; when the source tag has moved, the new content gets
    a digest-qualified tag of its own.
  - With O(referrers=true) (the default) the image's signatures, attestations and SBOMs go along with it, so that the
    backup reference verifies as the original does (see O(referrers)).
author:
  - image-clone maintainers (!UNKNOWN)
options:
  images:
    description:
      - The source images, as workloads reference them (for example V(nginx:1.27), V(quay.io/org/app@sha256:...)).
      - Every reference is checked before anything is copied; an invalid one fails the task, naming it.
      - Repeated images, and spellings of the same image (V(nginx) and V(docker.io/library/nginx:latest)), are
        handled once.
    type: list
    elements: str
    required: true
  pull_secrets:
    description:
      - Per image of O(images), the pull Secrets (C(namespace/name)) whose credentials may be used for its source
        registry, in order; the first with an entry for the registry wins, and an entry of O(source_authfile) wins over
        them all.
      - RV(imageclone.backup.workload_images_info#module:pull_secrets) of M(imageclone.backup.workload_images_info)
        lists them for the images of a cluster's workloads, as their pods pull with them.
      - Each Secret is read from the cluster by name (the connection options say which cluster), which needs the
        kubernetes Python client; a Secret that cannot be used is named in the reason of an image that then cannot be
        backed up.
      - Ignored with O(use_pull_secrets=false).
    type: dict
  backups_in_use:
    description:
      - Backups that rewritten workloads already use, each with the upstream image it was copied from, as
        RV(imageclone.backup.workload_images_info#module:backups_in_use) of
        M(imageclone.backup.workload_images_info) lists them.
      - With O(referrers=true), each gets the signatures, attestations and SBOMs added upstream since it was copied
        (one tag list of the original's repository); nothing else is copied.
      - Each is looked up first (one HEAD; a pinned one must still have its digest). A lost one is only reported
        here; M(imageclone.backup.workload_rewrite) restores it from the recorded original.
      - A key that does not point into the backup registry, or an invalid reference, fails the task, naming it.
    type: dict
    default: {}
  fail_on_missing:
    description:
      - Whether an image that exists neither in its source registry nor in the backup fails the task.
    type: bool
    default: true
  fail_on_error:
    description:
      - Whether an image that V(failed) (a registry or copy error) fails the task.
      - Every image is tried either way; with V(false) the results list the failed ones and the task succeeds, so
        that the workloads using the other images can still be rewritten (the migrate playbook does this, and
        fails the run at the end, after doing everything else).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - imageclone.backup.connection
  - imageclone.backup.backup
  - imageclone.backup.backup.attributes
attributes:
  action_group:
    support: full
    membership:
      - imageclone.backup.all
  check_mode:
    support: full
    details:
      - In check mode registries are only read (HEAD requests); images that would be copied are reported V(copied).
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    platforms: posix
requirements:
  - urllib3, for the registry requests (the kubernetes Python client is needed only with O(pull_secrets), to read them;
    otherwise this module never contacts the cluster)
  - skopeo, for the copies
notes:
  - An image whose source has vanished but whose backup exists is V(present) (the backup is what it is for).
seealso:
  - module: imageclone.backup.workload_images_info
    description: Lists the images the workloads of a cluster use, ready to be passed as O(images).
  - module: imageclone.backup.workload_rewrite
    description: Rewrites workloads to the verified backups.
"""

EXAMPLES = r"""
- name: Back up the images of a release into the backup registry
  imageclone.backup.image_backup:
    images:
      - nginx:1.27
      - quay.io/prometheus/node-exporter:v1.8.2
      - registry.example.com/team/api@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    backup_registry: backup.example.com/platform/images
    backup_username: image-clone
    backup_password: "{{ vault_backup_password }}"
  register: backup

- name: Back up what workload_images_info found, tolerating images gone from everywhere
  imageclone.backup.image_backup:
    images: "{{ discovery.images }}"
    backup_registry: backup.example.com/mirror
    naming: nested
    backup_authfile: /etc/image-clone/backup-auth.json
    fail_on_missing: false
  register: backup

- name: Show what is not backed up
  ansible.builtin.debug:
    msg: "{{ backup.missing + backup.failed_images }}"
"""

RETURN = r"""
images:
  description: One entry per distinct image of O(images), in order.
  returned: success, and failure after the images were looked at
  type: list
  elements: dict
  contains:
    source:
      description: The image as given in O(images).
      type: str
      sample: nginx:1.27
    backup:
      description:
        - The backup reference, pinned by digest (C(<backup>:<tag>@<digest>)) unless O(pin=false).
        - V(null) when the image is not backed up.
      type: str
      sample: backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    digest:
      description: The digest verified in the backup registry; V(null) when the image is not backed up.
      type: str
      sample: sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    state:
      description:
        - V(copied) (copied now, or in check mode would be), V(present) (the backup already had this digest),
          V(missing) (neither the source nor the backup has it), V(failed) (a registry or copy error).
      type: str
      choices: [copied, present, missing, failed]
      sample: copied
    reason:
      description: "Why the image is missing or failed, or a note such as V(check mode: would copy); else V(null)."
      type: str
      sample: null
    referrers_copied:
      description:
        - How many artifacts referring to the image (signatures, attestations, SBOMs, the OCI referrers index) were
          copied into its backup repository by this run; V(0) when the backup already had them all, in check mode
          and with O(referrers=false).
      type: int
      sample: 2
backups_in_use:
  description:
    - One entry per backup of O(backups_in_use), with the keys of RV(images) (C(source) is the backup reference as
      given); C(state) is V(present), V(missing) when lost (not a failure of the task), or V(failed) when it could
      not be looked up.
  returned: success, and failure after the images were looked at
  type: list
  elements: dict
  sample: []
copied:
  description: The images of O(images) copied now (or, in check mode, that would be).
  returned: success, and failure after the images were looked at
  type: list
  elements: str
  sample: [nginx:1.27]
present:
  description: The images whose backup already had the source's digest.
  returned: success, and failure after the images were looked at
  type: list
  elements: str
  sample: [quay.io/prometheus/node-exporter:v1.8.2]
missing:
  description: The images that exist neither in their source registry nor in the backup.
  returned: success, and failure after the images were looked at
  type: list
  elements: str
  sample: []
failed_images:
  description:
    - The images that could not be looked at or copied.
    - Not called C(failed), which is Ansible's flag for a failed task.
  returned: success, and failure after the images were looked at
  type: list
  elements: str
  sample: []
"""

import traceback

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.arguments import (
    BACKUP_ARGUMENTS,
    CONNECTION_ARGUMENTS,
)
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.module import open_module
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import (
    backup_failure,
    backup_results,
    outcome,
)

try:
    from ansible_collections.imageclone.backup.plugins.module_utils.backup import verify_in_use
    from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions, backup_service
    from ansible_collections.imageclone.backup.plugins.module_utils.kube import (
        KubeApiError,
        KubeConfigError,
        api_from_options,
    )
    from ansible_collections.imageclone.backup.plugins.module_utils.naming import is_backup_reference
    from ansible_collections.imageclone.backup.plugins.module_utils.pullcredentials import (
        PullSecretReader,
        SourceCredentials,
        source_credentials,
    )
    from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
        InvalidReference,
        parse_reference,
    )
except ImportError:
    ENGINE_IMPORT_ERROR = traceback.format_exc()
else:
    ENGINE_IMPORT_ERROR = None


def parse_images(images):
    """``{image as given: reference}``; ``ValueError`` naming every invalid reference."""
    references, problems = {}, []
    for image in images:
        try:
            references[image] = parse_reference(image)
        except InvalidReference as error:
            problems.append(str(error))
    if problems:
        raise ValueError(f"{len(problems)} invalid image reference(s), nothing was copied: {'; '.join(problems)}")
    return references


def parse_backups_in_use(backups_in_use, policy):
    """``({backup as given: reference}, {backup as given: its original})``; ``ValueError`` naming every problem."""
    backups, originals, problems = {}, {}, []
    for backup, original in backups_in_use.items():
        try:
            backups[backup], originals[backup] = parse_reference(backup), parse_reference(str(original))
        except InvalidReference as error:
            problems.append(str(error))
            continue
        if not is_backup_reference(backups[backup], policy):
            problems.append(f"{backup!r} does not point into the backup registry {policy.target_registry}")
    if problems:
        raise ValueError(f"backups_in_use: {'; '.join(problems)}")
    return backups, originals


def pull_secret_credentials(params, references):
    """The credentials of the ``pull_secrets`` of the images of ``references``, read from the cluster."""
    secrets = {image: names for image, names in (params["pull_secrets"] or {}).items() if image in references}
    if not params["use_pull_secrets"] or not secrets:
        return SourceCredentials({}, {})
    for image, names in secrets.items():
        if not isinstance(names, list) or not all(isinstance(name, str) and name.count("/") == 1 for name in names):
            raise ValueError(f"pull_secrets: {image!r} needs a list of namespace/name strings")
    return source_credentials(PullSecretReader(api_from_options(params)), secrets)


def main():
    module = open_module(
        CONNECTION_ARGUMENTS,
        BACKUP_ARGUMENTS,
        engine_import_error=ENGINE_IMPORT_ERROR,
        library="urllib3",
        images={"type": "list", "elements": "str", "required": True},
        pull_secrets={"type": "dict", "no_log": False},  # Secret names, not secrets
        backups_in_use={"type": "dict", "default": {}},
        fail_on_missing={"type": "bool", "default": True},
        fail_on_error={"type": "bool", "default": True},
    )

    try:
        references = parse_images(module.params["images"])
        service = backup_service(BackupOptions.from_mapping(module.params), dry_run=module.check_mode)
        in_use, originals = parse_backups_in_use(module.params["backups_in_use"], service.policy)
        access = pull_secret_credentials(module.params, references)
    except (ValueError, KubeConfigError, KubeApiError) as error:
        module.fail_json(msg=str(error))
    outcomes = access.explain(service.ensure_all(references, access.stores)) if references else {}
    verified_in_use = verify_in_use(service, in_use, originals) if in_use else {}

    results = backup_results(outcomes)
    results["backups_in_use"] = [outcome(result) for result in verified_in_use.values()]
    changed = bool(results["copied"]) or any(image["referrers_copied"]
                                             for image in results["images"] + results["backups_in_use"])
    failure = backup_failure(outcomes, module.params["fail_on_missing"], module.params["fail_on_error"])
    if failure:
        module.fail_json(msg=failure, changed=changed, **results)
    module.exit_json(changed=changed, **results)


if __name__ == "__main__":
    main()
