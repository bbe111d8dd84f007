#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_rewrite
short_description: Point workloads at their verified image backups, or restore their original images
version_added: 0.1.0
description:
  - With O(state=rewritten), verifies every image of each workload in scope in the backup registry itself (HEAD
    requests; no earlier result is trusted), then rewrites the workload to the pinned backup references, all its
    images or none. A workload with any image not verified is V(blocked) and left untouched. Images are never copied
    here for the first time (that is M(imageclone.backup.image_backup)'s job); with O(referrers=true), the
    signatures, attestations and SBOMs a verified backup lacks are, unless O(referrers_checked) names the image, so
    no workload is rewritten to a backup that a signature policy would refuse.
  - A workload already rewritten is verified too. When its backup was lost (deleted from the backup registry), it is
    restored (V(restored)) from the original recorded in the C(imageclone.io/original-images) annotation, at the pinned
    digest, into the exact reference the workload uses; when upstream no longer has that digest either, the workload
    is V(blocked) as unprotected, with a reason naming the backup and the original.
  - The original images are recorded in the C(imageclone.io/original-images) annotation, in the same conditional
    patch that changes the images; a concurrent change of the workload makes the module read it again and
    re-plan. Only the C(image) fields (and, with O(pull_secret), C(imagePullSecrets)) change.
  - A workload already pointing at its verified backups costs no write at all.
  - With O(state=reverted), restores the images recorded in the annotation and removes it; a workload whose original
    image no longer exists upstream is V(blocked) and left on its backup unless O(force=true).
  - Back the images up first with M(imageclone.backup.image_backup).
author:
  - image-clone maintainers (!UNKNOWN)
options:
  state:
    description:
      - V(rewritten) points the workloads at their verified backups.
      - V(reverted) restores the images recorded before the rewrite (workloads never rewritten are V(unchanged)).
    type: str
    choices: [rewritten, reverted]
    default: rewritten
  workloads:
    description:
      - Only these workloads, for example one batch of the RV(imageclone.backup.workload_images_info#module:workloads)
        of M(imageclone.backup.workload_images_info).
      - Each entry needs C(kind), C(namespace) and C(name); other keys are ignored, so entries of
        RV(imageclone.backup.workload_images_info#module:workloads) can be passed as they are.
      - The scope options still apply. A listed workload that discovery leaves alone (ignored namespace, opt-out
        annotation, owned by a controller...) is in RV(skipped_workloads); one outside O(namespaces) or O(kinds), or
        that does not exist, is V(failed).
      - Every workload in scope when not set.
    type: list
    elements: dict
  pull_secret:
    description:
      - The name of a pull Secret (type C(kubernetes.io/dockerconfigjson)) to create in each namespace of a rewritten
        workload, holding the backup registry's username and password only, and to add to the workload's
        C(imagePullSecrets) (existing entries stay).
      - Needs O(backup_username) and O(backup_password), or an entry with both in O(backup_authfile).
      - An existing Secret of that name that image-clone did not create is never overwritten (the workload fails).
      - A bare Pod's C(imagePullSecrets) cannot change, so such a Pod fails with this option.
      - Ignored with O(state=reverted).
      - When credentials for the backup registry are given (it needs them) but this option is not, a workload
        rewritten without it gets a warning, as pods on nodes without credentials for that registry fail to pull.
    type: str
  referrers_checked:
    description:
      - Images, as workloads use them, whose signatures, attestations and SBOMs an earlier task of the same run
        already copied into the backup, such as the verified RV(imageclone.backup.image_backup#module:images) and
        RV(imageclone.backup.image_backup#module:backups_in_use) of M(imageclone.backup.image_backup).
      - They are not looked for upstream again, so that a run costs one such lookup per image however many batches
        use it.
      - These images are still verified in the backup registry (one HEAD each) before any rewrite.
    type: list
    elements: str
    default: []
  wait:
    description:
      - Whether to wait, after writing, until the rollout of every written Deployment, DaemonSet and StatefulSet is
        complete (its controller has seen the change, all desired pods run the new template, no old pod is left
        and the new pods are available, that is Ready).
      - The task fails when O(wait_timeout) passes first; the workloads stay rewritten.
      - Never waits in check mode.
    type: bool
    default: false
  wait_timeout:
    description:
      - How many seconds to wait for the rollouts, all together.
    type: int
    default: 300
  fail_on_blocked:
    description:
      - Whether the task fails when a workload is V(blocked) or V(failed) (the other workloads are processed anyway).
    type: bool
    default: false
  force:
    description:
      - With O(state=reverted), whether to revert a workload even when one of its original images no longer exists
        upstream.
      - By default each original is looked up in its registry first (a HEAD request) and a workload whose original
        is gone stays on its backup, V(blocked) with a reason naming the container and the image, since reverting it
        would leave its pods unable to pull.
      - Ignored with O(state=rewritten).
    type: bool
    default: false
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
      - In check mode every patch (and pull Secret) is sent as a server-side dry run, validated and authorized by the
        API server but never stored; the workloads that would change are reported as if they had.
      - An image that is not backed up yet but exists upstream counts as verified in check mode, as a preceding
        M(imageclone.backup.image_backup) task would copy it; a real run requires the backup to exist.
      - "A lost backup that would be restored is reported V(restored) with the reason V(check mode: would restore it
        from ...), and counts as a change."
  diff_mode:
    support: full
    details:
      - The diff shows, per written workload, the images that change by section and container (and
        C(imagePullSecrets) when one is added).
  idempotent:
    support: full
  platform:
    platforms: posix
notes:
  - Workloads of a namespace being deleted (Terminating) are left alone and listed in RV(skipped_workloads).
  - Jobs are never rewritten (their pod template is immutable); they are V(blocked) with that reason once their images
    are backed up.
  - Workloads managed by Argo CD or Flux are rewritten unless O(skip_gitops=true), and say so in
    RV(workloads[].managed_by); change their source too, or the GitOps controller reverts the rewrite.
  - A revert leaves a pull Secret added by O(pull_secret) in place.
seealso:
  - module: imageclone.backup.image_backup
  - module: imageclone.backup.workload_images_info
"""

EXAMPLES = r"""
- name: Rewrite every workload of the shop namespace whose images are all backed up
  imageclone.backup.workload_rewrite:
    namespaces: [shop]
    backup_registry: backup.example.com/platform/images
    backup_username: image-clone
    backup_password: "{{ vault_backup_password }}"
    pull_secret: image-clone-backup
    wait: true
  register: rewrite

- name: Rewrite one batch of the workloads workload_images_info found, failing on any blocked one
  imageclone.backup.workload_rewrite:
    workloads: "{{ discovery.workloads[:25] }}"
    backup_registry: backup.example.com/platform/images
    backup_authfile: /etc/image-clone/backup-auth.json
    fail_on_blocked: true

- name: Put the original images back
  imageclone.backup.workload_rewrite:
    state: reverted
    namespaces: [shop]
    backup_registry: backup.example.com/platform/images
"""

RETURN = r"""
workloads:
  description: What happened to each workload, in discovery order (listed O(workloads) not found come last).
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
    state:
      description:
        - V(rewritten) or V(reverted) (written now, or in check mode would be), V(unchanged) (nothing to write),
          V(owned) (its images are verified in the backup, but another controller owns it, for example a StatefulSet
          of a Prometheus object; the reason names the owner to configure and the images to point it at),
          V(blocked) (an image is not verified in the backup, the workload cannot take the change, or, reverting, an
          original image no longer exists upstream), V(failed) (an API error, or a listed workload not found).
      type: str
      choices: [rewritten, unchanged, owned, blocked, failed, reverted]
      sample: rewritten
    reason:
      description: Why the workload is owned, blocked or failed; else V(null).
      type: str
      sample: null
    managed_by:
      description: V(argocd) or V(flux) when a GitOps controller manages the workload, V(helm) for a Helm release, else V(null).
      type: str
      sample: null
    changes:
      description: The image changes written (or, in check mode, that would be).
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
          description: The image before.
          type: str
          sample: nginx:1.27
        after:
          description: The image after.
          type: str
          sample: backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
    pull_secret:
      description: The pull Secret added to C(imagePullSecrets) by this write, else V(null).
      type: str
      sample: null
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
summary:
  description: How many workloads ended in each state, and how many were skipped.
  returned: always
  type: dict
  sample: {rewritten: 3, unchanged: 10, owned: 1, blocked: 1, failed: 0, reverted: 0, skipped: 4}
images:
  description:
    - The verification of every image of the workloads (O(state=rewritten) only; empty with O(state=reverted)).
    - Same entries as RV(imageclone.backup.image_backup#module:images); V(missing) here means not backed up (yet), or a
      lost backup that cannot be restored; V(restored) a lost backup copied again from its recorded original (in check
      mode, one that would be).
  returned: always
  type: list
  elements: dict
  sample:
    - source: nginx:1.27
      backup: backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
      digest: sha256:4f3a5b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a
      state: present
      reason: null
diff:
  description: Per written workload, the images before and after (Ansible's diff format).
  returned: in diff mode, when a workload is written
  type: list
  elements: dict
  sample:
    - before_header: Deployment/shop/web
      after_header: Deployment/shop/web
      before: {containers: {app: nginx:1.27}}
      after: {containers: {app: "backup.example.com/platform/images:docker.io_library_nginx_1.27@sha256:4f3a..."}}
"""

import time
import traceback

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.arguments import (
    scope_fields,
    workload_ids,
)
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.module import open_workload_module
from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import (
    outcome,
    skipped_entry,
    trouble,
    workload_diff,
    workload_report,
    workload_summary,
)

try:
    from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions
    from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError, KubeConfigError
    from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope, WorkloadReport
    from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState, WorkloadState
    from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
        KINDS,
        Skipped,
        namespace_skip_reason,
    )
except ImportError:
    ENGINE_IMPORT_ERROR = traceback.format_exc()
else:
    ENGINE_IMPORT_ERROR = None

POLL_SECONDS = 1.0


def select(found, ids, ignore_namespaces):
    """``(workloads, skipped, reports of listed workloads not found)`` for the selection ``ids`` (None: all)."""
    if ids is None:
        return list(found.workloads), list(found.skipped), []
    listed = {(w.kind.name, w.namespace, w.name): w for w in found.workloads}
    left_alone = {(s.kind, s.namespace, s.name): s for s in found.skipped}
    workloads, skipped_ones, absent = [], [], []
    for kind, namespace, name in ids:
        key = (kind, namespace, name)
        # Discovery may not have listed an ignored namespace at all: its rule still says why.
        ignored = namespace_skip_reason(namespace, ignore_namespaces)
        if key in listed:
            workloads.append(listed[key])
        elif key in left_alone:
            skipped_ones.append(left_alone[key])
        elif ignored:
            skipped_ones.append(Skipped(kind, namespace, name, ignored))
        else:
            reason = "not found in the scope (no such workload, or outside the namespaces or kinds options)"
            absent.append(WorkloadReport(f"{kind}/{namespace}/{name}", "failed", reason))
    return workloads, skipped_ones, absent


def rewrite_all(engine, workloads):
    """Verify every image in the backup (restoring lost backups, never making first copies), then rewrite each
    ready workload."""
    outcomes = engine.back_up(workloads)
    return engine.rewrite_each(workloads, outcomes), outcomes


def wait_for_rollouts(api, reports, timeout):
    """Wait until the written workloads of kinds that roll out (Deployments, DaemonSets, StatefulSets) have rolled
    out, as ``kubectl rollout status`` means it.

    Returns ``{key: why not}`` for those still rolling out at ``timeout`` (seconds, all together).
    """
    pending = {}
    for report in reports:
        kind_name, namespace, name = report.key.split("/", 2)
        kind = KINDS[kind_name]
        if report.state.written and kind.rollout is not None:
            written = (report.result.object or {}).get("metadata") or {}
            pending[report.key] = (kind, namespace, name, written.get("generation"))
    deadline = time.monotonic() + timeout
    waiting = {}
    while pending:
        for key, (kind, namespace, name, generation) in list(pending.items()):
            why = kind.rollout.pending(api.get(kind, namespace, name), generation)
            if why is None:
                del pending[key]
                waiting.pop(key, None)
            else:
                waiting[key] = why
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return waiting


def run(params, check_mode):
    """One pass: ``(engine reports, return values)``."""
    options = BackupOptions.from_mapping(params)
    ids = workload_ids(params["workloads"])
    rewriting = params["state"] == "rewritten"
    # A real run only verifies, and restores lost backups (first copies are image_backup's job);
    # check mode also counts the images a preceding image_backup task would have copied, so it
    # previews the real run.
    engine = Migration.from_options(
        params, options, Scope.of(**scope_fields(params, ids)), dry_run=check_mode, copy=check_mode,
        pull_secret_name=params["pull_secret"] if rewriting else None, referrers_checked=params["referrers_checked"],
    )
    workloads, skipped_ones, absent = select(engine.discover(), ids, params["ignore_namespaces"] or ())
    if rewriting:
        reports, outcomes = rewrite_all(engine, workloads)
    else:
        reports, outcomes = [engine.revert(workload, force=params["force"]) for workload in workloads], {}
    reports += absent
    results = {
        "workloads": [workload_report(report) for report in reports],
        "skipped_workloads": [skipped_entry(item) for item in skipped_ones],
        "images": [outcome(result) for result in outcomes.values()],
    }
    results["summary"] = workload_summary(results["workloads"], len(skipped_ones))
    return engine, reports, results


def pull_secret_warning(params, reports):
    """Why pods may fail to pull the images just rewritten (no pull Secret for an authenticated backup registry),
    or None."""
    if params["pull_secret"] or not any(report.state is WorkloadState.REWRITTEN for report in reports):
        return None
    options = BackupOptions.from_mapping(params)
    if not options.has_backup_login():
        return None
    registry = options.policy.target_registry
    return (f"the backup registry {registry} needs credentials (they were given for it), but no pull_secret was "
            f"given: pods on nodes without credentials for {registry} will fail to pull the rewritten images; "
            "set pull_secret, or make sure every node can pull from it")


def main():
    module = open_workload_module(
        engine_import_error=ENGINE_IMPORT_ERROR,
        state={"type": "str", "choices": ["rewritten", "reverted"], "default": "rewritten"},
        workloads={"type": "list", "elements": "dict"},
        pull_secret={"type": "str", "no_log": False},  # the Secret's name, not a secret
        referrers_checked={"type": "list", "elements": "str", "default": []},
        wait={"type": "bool", "default": False},
        wait_timeout={"type": "int", "default": 300},
        fail_on_blocked={"type": "bool", "default": False},
        force={"type": "bool", "default": False},
    )
    try:
        engine, reports, results = run(module.params, module.check_mode)
    except (ValueError, KubeConfigError, KubeApiError) as error:
        module.fail_json(msg=str(error))

    changed = any(report.state.written for report in reports) or any(
        image["state"] == ImageState.RESTORED for image in results["images"])
    warning = pull_secret_warning(module.params, reports)
    if warning:
        module.warn(warning)
    if module._diff:
        results["diff"] = [diff for diff in map(workload_diff, reports) if diff is not None]

    if module.params["wait"] and not module.check_mode:
        try:
            waiting = wait_for_rollouts(engine.api, reports, module.params["wait_timeout"])
        except KubeApiError as error:
            module.fail_json(msg=f"the workloads were written, but waiting for their rollouts failed: {error}",
                             changed=changed, **results)
        if waiting:
            lines = "; ".join(f"{key}: {why}" for key, why in waiting.items())
            module.fail_json(msg=f"rollouts not complete after {module.params['wait_timeout']}s: {lines}",
                             changed=changed, **results)

    failure = trouble(results["workloads"])
    if failure and module.params["fail_on_blocked"]:
        module.fail_json(msg=failure, changed=changed, **results)
    module.exit_json(changed=changed, **results)


if __name__ == "__main__":
    main()
