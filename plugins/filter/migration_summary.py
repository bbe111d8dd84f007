# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The migration playbook's summary filter; its documentation is migration_summary.yml."""

from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.summary import migration_summary


class FilterModule:
    def filters(self):
        return {"migration_summary": migration_summary}
