"""Source credentials from workloads' pull Secrets: which Secrets, how they are parsed, what a problem says."""
from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import Credential, CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome
from ansible_collections.imageclone.backup.plugins.module_utils.pullcredentials import (
    PullSecretReader,
    SourceCredentials,
    workload_source_credentials,
)
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS, workload_from_object

SECRET = "pa55:word-of-the-team"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_secret(auths: dict, kind: str = "kubernetes.io/dockerconfigjson") -> dict:
    if kind == "kubernetes.io/dockercfg":
        return {"type": kind, "data": {".dockercfg": b64(json.dumps(auths))}}
    return {"type": kind, "data": {".dockerconfigjson": b64(json.dumps({"auths": auths}))}}


def login(user: str) -> dict:
    return {"auth": b64(f"{user}:{SECRET}")}


class Objects:
    """The API's GET of one object by name, from a dict; every GET is recorded."""

    def __init__(self, objects: dict) -> None:
        self.objects = objects
        self.gets: list[tuple[str, str, str]] = []

    def get(self, resource, namespace, name):
        self.gets.append((resource.plural, namespace, name))
        found = self.objects.get((resource.plural, namespace, name))
        if isinstance(found, int):
            raise KubeApiError("get", f"{resource.plural} {namespace}/{name}", found, "Forbidden", "denied")
        if found is None:
            raise KubeApiError("get", f"{resource.plural} {namespace}/{name}", 404, "NotFound", "not found")
        return found


def deployment(name: str, image: str, secrets: tuple[str, ...] = (), account: str | None = None):
    spec: dict = {"containers": [{"name": "main", "image": image}]}
    if secrets:
        spec["imagePullSecrets"] = [{"name": secret} for secret in secrets]
    if account:
        spec["serviceAccountName"] = account
    body = {"metadata": {"name": name, "namespace": "shop"}, "spec": {"template": {"spec": spec}}}
    return workload_from_object(KINDS["Deployment"], body)


def test_the_pod_templates_secrets_come_first_then_the_service_accounts():
    api = Objects({("serviceaccounts", "shop", "builder"): {"imagePullSecrets": [{"name": "sa-cred"}]},
                   ("secrets", "shop", "own-cred"): docker_secret({"registry.example.com": login("own")}),
                   ("secrets", "shop", "sa-cred"): docker_secret({"registry.example.com": login("sa"),
                                                                  "quay.io": login("sa")})})
    image = "registry.example.com/team/api:2"
    found = workload_source_credentials(PullSecretReader(api), [
        deployment("api", image, ("own-cred",), account="builder")], {image})
    store = found.stores[image]
    assert store.lookup("registry.example.com") == Credential("own", SECRET)
    assert store.lookup("quay.io") == Credential("sa", SECRET)
    assert found.problems == {}


def test_without_a_service_account_name_the_default_one_is_read():
    api = Objects({("serviceaccounts", "shop", "default"): {}})
    assert workload_source_credentials(PullSecretReader(api), [deployment("a", "nginx:1")], {"nginx:1"}).stores == {}
    assert api.gets == [("serviceaccounts", "shop", "default")]


def test_an_image_of_several_workloads_takes_the_first_workloads_secret_and_each_object_is_read_once():
    api = Objects({("serviceaccounts", "shop", "default"): {},
                   ("secrets", "shop", "first"): docker_secret({"registry.example.com": login("first")}),
                   ("secrets", "shop", "second"): docker_secret({"registry.example.com": login("second")},
                                                                kind="kubernetes.io/dockercfg")})
    image = "registry.example.com/team/api:2"
    workloads = [deployment("a", image, ("first",)), deployment("b", image, ("second",)),
                 deployment("c", image, ("first",))]
    found = workload_source_credentials(PullSecretReader(api), workloads, {image})
    assert found.stores[image].lookup("registry.example.com") == Credential("first", SECRET)
    assert sorted(api.gets) == sorted(set(api.gets)), "an object was read twice"
    legacy = workload_source_credentials(PullSecretReader(api), [workloads[1]], {image})
    assert legacy.stores[image].lookup("registry.example.com") == Credential("second", SECRET)


@pytest.mark.parametrize("secret, problem", [
    (None, "pull Secret shop/cred does not exist"),
    (403, "pull Secret shop/cred could not be read: Forbidden (403)"),
    ({"type": "Opaque", "data": {"password": b64(SECRET)}}, "pull Secret shop/cred is of type 'Opaque'"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {}}, "pull Secret shop/cred (.dockerconfigjson) has no data"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": SECRET}},
     "pull Secret shop/cred (.dockerconfigjson) is not base64"),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64('{"auths": {"q": ' + SECRET)}},
     "pull Secret shop/cred (.dockerconfigjson) is not valid JSON"),
    (docker_secret({"quay.io": {"auth": b64(SECRET.replace(":", ""))}}),
     "pull Secret shop/cred (.dockerconfigjson): entry 'quay.io'"),
])
def test_an_unusable_secret_is_a_problem_naming_it_and_never_its_content(secret, problem):
    objects = {("serviceaccounts", "shop", "default"): {}}
    if secret is not None:
        objects[("secrets", "shop", "cred")] = secret
    found = workload_source_credentials(PullSecretReader(Objects(objects)), [deployment("a", "nginx:1", ("cred",))],
                                        {"nginx:1"})
    assert found.stores == {}
    [message] = found.problems["nginx:1"]
    assert message.startswith(problem), message
    assert SECRET not in message and SECRET.replace(":", "") not in message and b64(SECRET)[:12] not in message


def test_an_unreadable_service_account_is_a_problem_and_the_pod_templates_secrets_still_count():
    api = Objects({("serviceaccounts", "shop", "default"): 403,
                   ("secrets", "shop", "own"): docker_secret({"quay.io": login("own")})})
    found = workload_source_credentials(PullSecretReader(api), [deployment("a", "quay.io/t/a:1", ("own",))],
                                        {"quay.io/t/a:1"})
    assert found.stores["quay.io/t/a:1"].lookup("quay.io") == Credential("own", SECRET)
    [message] = found.problems["quay.io/t/a:1"]
    assert message.startswith("Deployment/shop/a: the pull Secrets of ServiceAccount shop/default could not be read")


def test_problems_explain_only_the_images_that_are_not_verified():
    found = SourceCredentials({}, {"a:1": ("pull Secret shop/cred does not exist",),
                                   "b:1": ("pull Secret shop/cred does not exist",)})
    outcomes = {"a:1": BackupOutcome("a:1", None, None, "failed", "access denied to anonymous client (HTTP 401)"),
                "b:1": BackupOutcome("b:1", "backup:b_1@sha256:x", "sha256:x", "present")}
    explained = found.explain(outcomes)
    assert explained["a:1"].reason == ("access denied to anonymous client (HTTP 401); "
                                       "pull Secret shop/cred does not exist")
    assert explained["b:1"] == outcomes["b:1"]


def test_a_legacy_dockercfg_holds_the_entries_alone():
    store = CredentialStore.from_docker_config(json.dumps({"quay.io": login("old")}), source="x", legacy=True)
    assert store.lookup("quay.io") == Credential("old", SECRET)
