# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The migration playbook's batching filter; its documentation is rewrite_batches.yml."""

from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.batches import rewrite_batches


class FilterModule:
    def filters(self):
        return {"rewrite_batches": rewrite_batches}
