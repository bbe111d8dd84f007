"""Verified backups are remembered for a while; failures never are."""
from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome
from imageclone_controller.backupcache import CachedBackups


class Service:
    policy, settings = "policy", "settings"

    def __init__(self, states):
        self.states = states
        self.calls = []

    def ensure_all(self, images, source_credentials=None):
        self.calls.append(sorted(images))
        self.credentials = source_credentials
        return {key: BackupOutcome(key, f"backup/{ref}" if self.states[ref] != "missing" else None, "sha256:x",
                                   self.states[ref]) for key, ref in images.items()}

    def restore(self, original, backup, source_credentials=None):
        self.calls.append(["restore", original, backup])
        return "restored-outcome"

    def copy_referrers_all(self, in_use):
        self.calls.append(["referrers", *sorted(in_use)])
        return {key: BackupOutcome(verified.source, verified.backup, verified.digest, verified.state,
                                   self.states.get("reason"), referrers_copied=1)
                for key, (_original, verified) in in_use.items()}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_verified_outcomes_are_served_from_memory_until_the_ttl_or_a_clear():
    service, clock, checked = Service({"nginx:1": "copied", "gone:1": "missing"}), Clock(), []
    cache = CachedBackups(service, 60, clock=clock, on_checked=checked.append)
    first = cache.ensure_all({"nginx:1": "nginx:1", "gone:1": "gone:1"})
    assert first["nginx:1"].state == "copied" and first["gone:1"].state == "missing"
    again = cache.ensure_all({"docker.io/nginx:1": "nginx:1", "gone:1": "gone:1"})
    assert service.calls == [["gone:1", "nginx:1"], ["gone:1"]]  # the missing one is asked again
    assert again["docker.io/nginx:1"].source == "docker.io/nginx:1"  # keyed as written by this workload
    assert [outcome.state for outcome in checked] == ["copied", "missing", "missing"]
    clock.now = 61
    cache.ensure_all({"nginx:1": "nginx:1"})
    assert service.calls[-1] == ["nginx:1"]
    cache.clear()
    cache.ensure_all({"nginx:1": "nginx:1"})
    assert service.calls[-1] == ["nginx:1"] and len(service.calls) == 4
    assert (cache.policy, cache.settings) == ("policy", "settings")


def test_restores_are_never_cached():
    service = Service({})
    cache = CachedBackups(service, 60)
    assert cache.restore("src:1", "backup:src_1@sha256:x") == "restored-outcome"
    assert cache.restore("src:1", "backup:src_1@sha256:x") == "restored-outcome"
    assert len(service.calls) == 2


def test_only_the_images_asked_again_hand_their_source_credentials_on():
    service = Service({"nginx:1": "copied", "private:1": "copied"})
    cache = CachedBackups(service, 60)
    cache.ensure_all({"nginx:1": "nginx:1"})
    cache.ensure_all({"nginx:1": "nginx:1", "private:1": "private:1"},
                     {"nginx:1": "store of nginx", "private:1": "store of private"})
    assert service.calls[-1] == ["private:1"] and service.credentials == {"private:1": "store of private"}


def used(image="backup:src_1@sha256:x"):
    return BackupOutcome(image, image, "sha256:x", "present")


def test_referrers_of_a_backup_in_use_are_looked_for_once_per_resync():
    service, clock = Service({}), Clock()
    cache = CachedBackups(service, 60, clock=clock)
    in_use = {"backup:src_1@sha256:x": ("src:1", used())}
    assert cache.copy_referrers_all(in_use)["backup:src_1@sha256:x"].referrers_copied == 1
    assert cache.copy_referrers_all(in_use) == {"backup:src_1@sha256:x": used()}  # from memory: no request
    assert len(service.calls) == 1
    cache.clear()  # a resync looks upstream again, and so does an expired entry
    cache.copy_referrers_all(in_use)
    clock.now = 61
    cache.copy_referrers_all(in_use)
    assert len(service.calls) == 3


def test_only_the_backups_not_checked_lately_go_to_the_service_together():
    service = Service({})
    cache = CachedBackups(service, 60)
    cache.copy_referrers_all({"backup:a": ("a:1", used("backup:a"))})
    both = cache.copy_referrers_all({"backup:a": ("a:1", used("backup:a")), "backup:b": ("b:1", used("backup:b"))})
    assert service.calls == [["referrers", "backup:a"], ["referrers", "backup:b"]]
    assert (both["backup:a"].referrers_copied, both["backup:b"].referrers_copied) == (0, 1)


def test_a_failed_referrer_check_is_not_remembered():
    service = Service({"reason": "its referrers upstream were not re-checked: registry down"})
    cache = CachedBackups(service, 60)
    in_use = {"backup:src_1@sha256:x": ("src:1", used())}
    cache.copy_referrers_all(in_use)
    cache.copy_referrers_all(in_use)
    assert len(service.calls) == 2
