"""The ``states`` lookup hands playbooks the engine's own state lists."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleError

from ansible_collections.imageclone.backup.plugins.lookup.states import LookupModule
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState


def test_verified_is_every_image_state_whose_backup_holds_the_image():
    assert LookupModule().run(["verified"]) == ["copied", "present", "restored"]
    assert set(LookupModule().run(["verified"])) == {state.value for state in ImageState if state.verified}


def test_terms_add_up_and_an_unknown_one_is_named():
    assert LookupModule().run(["trouble", "verified"]) == ["blocked", "failed", "copied", "present", "restored"]
    with pytest.raises(AnsibleError, match="unknown kind of state bogus"):
        LookupModule().run(["bogus"])
