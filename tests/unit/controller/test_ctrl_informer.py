"""The informer against a fake API: paged list, watch events, bookmarks, 410 relist, reconnect."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import urllib3
from kubernetes.client.exceptions import ApiException

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from imageclone_controller.informer import Informer


def obj(name, rv, image="nginx:1.27", replicas=1):
    return {"metadata": {"name": name, "namespace": "shop", "uid": name, "resourceVersion": str(rv)},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}


class Response:
    def __init__(self, data=b"", lines=(), error=None):
        self.data, self._lines, self._error = data, lines, error

    def stream(self, amt=None, decode_content=False):
        for line in self._lines:
            # Split each event in two chunks: lines must be reassembled.
            text = json.dumps(line).encode() + b"\n"
            yield text[:7]
            yield text[7:]
        if self._error:
            raise self._error

    def release_conn(self):
        pass

    def shutdown(self):
        pass


class FakeClient:
    """An ``ApiClient`` that answers from a script (the engine's ``KubeApi`` sits on top of it)."""

    configuration = SimpleNamespace(host="https://fake-apiserver")

    def __init__(self, script):
        self.script = list(script)
        self.calls = []
        self.done = threading.Event()

    def call_api(self, path, method, query_params=(), **kwargs):
        query = dict(query_params)
        self.calls.append((path, query))
        if not self.script:
            self.done.set()
            time.sleep(0.05)
            raise urllib3.exceptions.ProtocolError("no more script")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def page(items, rv, token=None):
    metadata = {"resourceVersion": str(rv)}
    if token:
        metadata["continue"] = token
    return Response(json.dumps({"items": items, "metadata": metadata}).encode())


def test_list_watch_bookmark_410_relist_and_reconnect():
    client = FakeClient([
        page([obj("a", 5)], 8, token="next"), page([obj("b", 6)], 10),  # two pages, one snapshot
        Response(lines=[{"type": "ADDED", "object": obj("c", 11)},
                        {"type": "MODIFIED", "object": obj("a", 12, replicas=3)},  # not a change that matters
                        {"type": "MODIFIED", "object": obj("b", 13, image="nginx:1.28")},
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
                        {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}]),
        page([obj("a", 12, replicas=3), obj("c", 11)], 20),  # b was deleted while we were not watching
        Response(lines=[{"type": "DELETED", "object": obj("c", 21)}],
                 error=urllib3.exceptions.ProtocolError("connection reset")),
        ApiException(status=410, reason="Gone"),  # the reconnect finds the version too old: relist
        page([obj("a", 12, replicas=3)], 30),
    ])
    changed, deleted, restarts = [], [], []
    informer = Informer(KubeApi(client), KINDS["Deployment"], on_change=changed.append, on_delete=deleted.append,
                        ignore_namespaces=["team-x"], on_restart=lambda name, cause: restarts.append(cause))
    informer.start()
    assert client.done.wait(10)
    informer.stop()
    informer.join(2)

    assert informer.synced
    assert changed == ["Deployment/shop/a", "Deployment/shop/b", "Deployment/shop/c", "Deployment/shop/b"]
    assert deleted == ["Deployment/shop/b", "Deployment/shop/c"]
    assert restarts[:3] == ["expired", "error", "expired"]
    paths = {path for path, _ in client.calls}
    assert paths == {"/apis/apps/v1/deployments"}
    lists = [query for _, query in client.calls if "watch" not in query]
    watches = [query for _, query in client.calls if "watch" in query]
    assert lists[0]["limit"] == 500 and lists[1]["continue"] == "next"
    assert lists[0]["fieldSelector"] == "metadata.namespace!=kube-system,metadata.namespace!=team-x"
    assert watches[0]["resourceVersion"] == "10" and watches[0]["allowWatchBookmarks"] == "true"
    assert watches[1]["resourceVersion"] == "20"
    assert watches[2]["resourceVersion"] == "21"  # resumed after the dropped connection
    assert informer.store.keys() == ["Deployment/shop/a"]


def test_a_namespaced_informer_uses_the_namespaced_path_and_no_selector():
    client = FakeClient([page([], 1)])
    informer = Informer(KubeApi(client), KINDS["CronJob"], namespace="team-a", on_change=print, on_delete=print)
    informer.start()
    assert client.done.wait(10)
    informer.stop()
    path, query = client.calls[0]
    assert path == "/apis/batch/v1/namespaces/team-a/cronjobs" and "fieldSelector" not in query
    assert informer.name == "CronJob/team-a"
