"""Leader election against an in-memory Lease API with resourceVersion preconditions."""
from __future__ import annotations

import copy
import socket
import threading

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from imageclone_controller.leader import LeaderElector, Timing
from imageclone_controller.log import fields
from imageclone_controller.manager import identity

FIELDS = next(iter(fields()))  # the log record attribute holding structured fields


class FakeLeases:
    """get/create/replace of Leases with optimistic concurrency, like the API server."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.version = 0
        self.down = False

    def _check(self, verb, name):
        if self.down:
            raise KubeApiError(verb, f"Lease {name}", None, "ConnectionError", "connection refused")

    def get(self, resource, namespace, name):
        self._check("get", name)
        try:
            return copy.deepcopy(self.objects[(namespace, name)])
        except KeyError:
            raise KubeApiError("get", f"Lease {name}", 404, "NotFound", "not found") from None

    def create(self, resource, namespace, body):
        self._check("create", body["metadata"]["name"])
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise KubeApiError("create", "Lease", 409, "AlreadyExists", "exists")
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def replace(self, resource, namespace, name, body):
        self._check("replace", name)
        current = self.objects[(namespace, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise KubeApiError("replace", f"Lease {name}", 409, "Conflict", "the object has been modified")
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(namespace, name)] = stored
        return copy.deepcopy(stored)

    def spec(self):
        return self.objects[("ns", "lease")]["spec"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def elector(api, identity, clock):
    return LeaderElector(api, "ns", "lease", identity, clock=clock)


def test_the_first_candidate_creates_the_lease_and_a_second_waits_for_expiry():
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert a.try_acquire_or_renew() is True
    assert api.spec()["holderIdentity"] == "a" and api.spec()["leaseDurationSeconds"] == 15
    assert b.try_acquire_or_renew() is False
    clock.now += 10
    assert a.try_acquire_or_renew() is True  # renewed: the record changed
    renewed = api.spec()["renewTime"]
    clock.now += 10
    assert b.try_acquire_or_renew() is False  # b sees the renewal now (t=20), measured on its own clock
    assert api.spec()["renewTime"] == renewed
    clock.now += 14.9
    assert b.try_acquire_or_renew() is False  # a stopped renewing, but 15s have not passed for b
    clock.now += 0.2
    assert b.try_acquire_or_renew() is True
    assert api.spec()["holderIdentity"] == "b" and api.spec()["leaseTransitions"] == 1


def test_release_lets_a_standby_take_over_at_once():
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    a._leading.set()
    assert b.try_acquire_or_renew() is False
    assert a.release() is True
    assert api.spec()["holderIdentity"] == "" and api.spec()["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew() is True  # no waiting for expiry


def test_a_conflicting_write_loses_the_race():
    api, clock = FakeLeases(), Clock()
    a = elector(api, "a", clock)
    a.try_acquire_or_renew()
    original_get = api.get

    def get_then_someone_writes(*args):
        lease = original_get(*args)
        api.objects[("ns", "lease")]["metadata"]["resourceVersion"] = "999"
        return lease

    api.get = get_then_someone_writes
    assert a.try_acquire_or_renew() is False


def test_the_leader_gives_up_after_the_renew_deadline_and_stops():
    api, clock = FakeLeases(), Clock()
    candidate = LeaderElector(api, "ns", "lease", "a", clock=clock,
                              timing=Timing(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=candidate.run, args=(stop,))
    thread.start()
    assert candidate.wait_leading(2)
    api.down = True
    clock.now += 1  # the renew deadline passes with every renewal failing
    thread.join(3)
    assert not thread.is_alive() and candidate.lost and not candidate.leading
    candidate.reset()
    api.down = False
    assert candidate.try_acquire_or_renew() is True  # still the holder: wins again at once


def test_timing_is_validated():
    import pytest

    with pytest.raises(ValueError):
        Timing(lease_duration=10, renew_deadline=10, retry_period=2)


def test_a_hung_renewal_ends_the_term_at_the_renew_deadline_and_writes_are_refused():
    import time

    import pytest

    api = FakeLeases()
    hang = threading.Event()
    original_get = api.get

    def get_or_hang(*args):
        if hang.is_set():
            threading.Event().wait(30)  # a request to a stalled API server, with no timeout of its own
        return original_get(*args)

    api.get = get_or_hang
    timing = Timing(lease_duration=1.5, renew_deadline=1.0, retry_period=0.1)
    candidate = LeaderElector(api, "ns", "lease", "a", timing=timing)
    stop = threading.Event()
    thread = threading.Thread(target=candidate.run, args=(stop,), daemon=True)
    thread.start()
    assert candidate.wait_leading(2)
    candidate.ensure_leading("patch", "Deployment ns/web")  # leading: allowed
    hang.set()
    hung_at = time.monotonic()
    while candidate.leading and time.monotonic() - hung_at < 5:
        time.sleep(0.01)
    stepped_down = time.monotonic() - hung_at
    # The term ends at most renew_deadline after the last renewal started: before a rival may take over.
    assert stepped_down <= timing.renew_deadline + 0.05, stepped_down
    with pytest.raises(KubeApiError) as refused:
        candidate.ensure_leading("patch", "Deployment ns/web")
    assert refused.value.reason == "NotLeader" and "lease ns/lease" in str(refused.value)
    thread.join(timing.renew_deadline)
    assert not thread.is_alive() and candidate.lost, "the loop returned although the request still hangs"
    stop.set()


def test_failures_are_logged_once_then_every_few_minutes_and_readiness_sees_them(caplog):
    api, clock = FakeLeases(), Clock()
    forbidden = KubeApiError("get", "Lease ns/lease", 403, "Forbidden", "leases is forbidden")

    def refuse(*args):
        raise forbidden

    api.get = refuse
    candidate = elector(api, "a", clock)
    with caplog.at_level("DEBUG", logger="imageclone.leader"):
        for _ in range(50):
            assert candidate.try_acquire_or_renew() is False
            clock.now += 2
    failures = [r for r in caplog.records if r.msg.startswith("lease update failed")]
    assert len(failures) == 1, [r.msg for r in failures]  # 100 s of failures: said once
    assert "needs get, create and update on leases" in getattr(failures[0], FIELDS)["error"]
    assert candidate.last_error is forbidden
    clock.now += 300
    candidate.try_acquire_or_renew()
    assert len([r for r in caplog.records if r.msg.startswith("lease update failed")]) == 2
    api.get = FakeLeases().get
    assert candidate.try_acquire_or_renew() is True and candidate.last_error is None


def test_the_identity_names_the_pod_even_when_it_shares_the_nodes_hostname(monkeypatch):
    monkeypatch.setenv("POD_NAME", "image-clone-controller-7d9f-abcde")
    first, second = identity(), identity()
    assert first.rsplit("_", 1)[0] == "image-clone-controller-7d9f-abcde" and first != second
    monkeypatch.delenv("POD_NAME")
    assert identity().rsplit("_", 1)[0] == socket.gethostname()
