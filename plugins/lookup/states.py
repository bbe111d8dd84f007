# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The states image-clone reports, from their one definition in the engine."""

from __future__ import annotations

DOCUMENTATION = r"""
name: states
author:
  - image-clone maintainers (!UNKNOWN)
short_description: The states image-clone reports for images and workloads, in order
description:
  - Returns the states the modules report, as the engine defines them, so that templates and
    conditions never keep a copy of their own.
options:
  _terms:
    description:
      - V(image) for the states of an image's backup, V(workload) for those of a workload,
        V(pass) for those a migration pass reports for a workload (every workload state but V(reverted)),
        V(trouble) for the workload states that leave a workload unprotected (V(blocked), V(failed)),
        V(verified) for the image states whose backup holds the image (V(copied), V(present), V(restored)).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Count the workloads of a run in each state
  ansible.builtin.debug:
    msg: "{{ state }}: {{ results | selectattr('state', 'equalto', state) | list | length }}"
  loop: "{{ query('imageclone.backup.states', 'pass') }}"
  loop_control:
    loop_var: state
"""

RETURN = r"""
_raw:
  description: The state names, in the order the summaries list them.
  type: list
  elements: str
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.imageclone.backup.plugins.module_utils.states import (
    PASS_WORKLOAD_STATES,
    ImageState,
    WorkloadState,
)

STATES = {
    "image": [state.value for state in ImageState],
    "workload": [state.value for state in WorkloadState],
    "pass": [state.value for state in PASS_WORKLOAD_STATES],
    "trouble": [state.value for state in WorkloadState if state.trouble],
    "verified": [state.value for state in ImageState if state.verified],
}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = [term for term in terms if term not in STATES]
        if unknown:
            raise AnsibleError(f"unknown kind of state {', '.join(map(str, unknown))}; known: {', '.join(STATES)}")
        return [state for term in terms for state in STATES[term]]
