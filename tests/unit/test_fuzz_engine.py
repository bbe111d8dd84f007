"""Fuzzing the engine with what real clusters and users can hand it: arbitrary bytes and unicode,
very long strings, and arbitrary JSON-like objects where workloads are expected.

Extends test_reference.py / test_naming.py (short text, grammar-shaped text, generated valid
references) and test_workloads.py / test_plan.py (hand-picked malformed objects). Properties:

* ``parse_reference`` raises nothing but ``InvalidReference``, on any text, quickly even when huge;
  what it accepts round-trips, and every backup name built from it (flat or nested, plain or
  versioned, pinned) is itself a valid reference inside the backup space;
* ``workload_from_object``, ``skip_reason``, ``images_to_back_up`` and ``plan_workload`` never
  raise on arbitrary JSON-like objects (of every kind) and arbitrary backup results, and a plan
  never writes an image that is not a valid reference in the backup space;
* ``CredentialStore.from_mapping`` raises nothing but ``CredentialError`` on arbitrary auth entries,
  and its messages never contain a password or an ``auth`` value.
"""
from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    CredentialError,
    CredentialStore,
)
from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    InvalidNamingPolicy,
    NamingPolicy,
    backup_reference,
    decode_flat_tag,
    is_backup_reference,
    pinned_reference,
    versioned_backup_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.plan import (
    BackupOutcome,
    images_to_back_up,
    plan_workload,
)
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import PullSecretError, pull_secret_fragment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import InvalidReference, parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import RewriteError, original_images
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    REWRITABLE_SECTIONS,
    skip_reason,
    workload_from_object,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
POLICIES = (
    NamingPolicy("flat", "backup.example.com/ns/registry"),
    NamingPolicy("nested", "backup.example.com/mirror"),
    NamingPolicy("nested", "127.0.0.1:5000"),
)
DIGEST = "sha256:" + "ab" * 32

# -- text --------------------------------------------------------------------------------------------------

# Every code point, lone surrogates and controls included.
any_char = st.characters(codec=None, categories=None)
unicode_text = st.text(any_char, max_size=80)
raw_bytes = st.binary(max_size=120).map(lambda data: data.decode("utf-8", "surrogateescape"))
latin1 = st.binary(max_size=120).map(lambda data: data.decode("latin-1"))
# Long inputs, built by repetition (hypothesis draws short strings cheaply, long ones slowly).
long_text = st.builds(lambda unit, times: unit * times, st.text(any_char, min_size=1, max_size=12),
                      st.integers(min_value=200, max_value=20_000))
# Long, almost valid references: deep paths, long components, long tags, repeated separators.
near_miss = st.builds(
    lambda registry, component, depth, separator, suffix: registry + separator.join([component] * depth) + suffix,
    st.sampled_from(["", "docker.io/", "quay.io/", "127.0.0.1:5000/", "[::1]:5000/", "UPPER.io/", "a" * 300 + ".io/"]),
    st.sampled_from(["a", "library", "a-b", "a__b", "x" * 70, "0", "a.b"]),
    st.integers(min_value=1, max_value=400),
    st.sampled_from(["/", "//", "-", "_", "."]),
    st.sampled_from(["", ":latest", ":" + "t" * 128, ":" + "t" * 129, "@" + DIGEST, ":v1@" + DIGEST, ":", "@", "\n"]),
)
everything = st.one_of(unicode_text, raw_bytes, latin1, long_text, near_miss)


def parse_or_none(text: str):
    try:
        return parse_reference(text)
    except InvalidReference as error:
        assert error.reference == text
        return None


@FUZZ
@given(everything)
@example("a" * 100_000)
@example("a/" * 50_000 + "b")
@example("a-" * 50_000 + "!")
@example("docker.io/" + "a_" * 60_000)
@example(":" * 10_000 + "@" * 10_000)
@example("\udc80nginx:1.27")
@example("nginx:1.27\x00")
@example("nginx:1.27" + "\u0301" * 1000)
def test_parse_reference_raises_only_invalid_reference_and_quickly(text):
    started = time.perf_counter()
    reference = parse_or_none(text)
    assert time.perf_counter() - started < 2.0, f"parsing {len(text)} characters took too long"
    if reference is not None:
        assert text.isascii() and len(str(reference)) <= 255 + 1 + 128 + 1 + 7 + 128
        assert parse_reference(str(reference)) == reference


@FUZZ
@given(st.one_of(near_miss, long_text, unicode_text))
@example("docker.io/" + "/".join(["x" * 70] * 3) + ":" + "t" * 128 + "@" + DIGEST)
def test_every_backup_name_of_an_accepted_reference_is_valid_and_in_the_backup_space(text):
    source = parse_or_none(text)
    if source is None:
        return
    for policy in POLICIES:
        if is_backup_reference(source, policy):  # already a backup (e.g. anything on a prefix-less nested
            assert backup_reference(source, policy) == source  # registry): left as it is
            continue
        try:
            backup = backup_reference(source, policy)
        except InvalidReference:
            assert policy.kind == "nested"  # only a nested name can exceed 255 characters
            continue
        assert parse_reference(str(backup), default_tag=None) == backup
        assert is_backup_reference(backup, policy) and backup.tag is not None
        assert backup_reference(backup, policy) == backup  # idempotent
        try:
            versioned = versioned_backup_reference(source, source.digest or DIGEST, policy)
        except InvalidReference:
            assert policy.kind == "nested"
            continue
        assert parse_reference(str(versioned), default_tag=None) == versioned
        assert is_backup_reference(versioned, policy)
        pinned = pinned_reference(backup.without_digest(), source.digest or DIGEST)
        assert parse_reference(pinned, default_tag=None).digest == (source.digest or DIGEST)


@FUZZ
@given(st.one_of(unicode_text, raw_bytes, long_text))
def test_flat_tag_decoding_and_policies_raise_only_their_own_errors(text):
    try:
        decode_flat_tag(text)
    except InvalidReference as error:
        assert error.reference == text
    for kind in ("flat", "nested", text):
        try:
            NamingPolicy(kind, text)
        except InvalidNamingPolicy:
            pass


# -- objects -------------------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), unicode_text,
                    st.sampled_from(["nginx:1.27", "docker.io/library/redis@" + DIGEST, "", "   ", "main"]))
json_like = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(unicode_text, children, max_size=4), max_leaves=25)
images = st.one_of(everything, st.sampled_from([
    "nginx:1.27", "quay.io/org/app:v1", "backup.example.com/ns/registry:docker.io_library_nginx_1.27@" + DIGEST,
    "backup.example.com/mirror/docker.io/library/nginx:1.27", "127.0.0.1:5000/x@" + DIGEST]), json_like)
containers = st.lists(st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["main", "side", "init", ""]), unicode_text, json_like),
                           "image": images}),
    json_like), max_size=4)
valid_images = st.sampled_from([
    "nginx:1.27", "quay.io/org/app:v1", "docker.io/library/redis@" + DIGEST, "ghcr.io/a/b:c@" + DIGEST,
    "backup.example.com/ns/registry:docker.io_library_nginx_1.27@" + DIGEST, "127.0.0.1:5000/x@" + DIGEST,
    "backup.example.com/mirror/docker.io/library/nginx:1.27", "registry.k8s.io/pause:3.9"])
clean_containers = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["main", "side", "init", "debug"]),
                                                   "image": valid_images}), min_size=1, max_size=3,
                            unique_by=lambda container: container["name"])
pod_specs = st.one_of(
    st.fixed_dictionaries({"containers": clean_containers}, optional={
        "initContainers": clean_containers, "ephemeralContainers": clean_containers,
        "imagePullSecrets": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["team", "imageclone-backup-pull"])}), max_size=2)}),
    st.fixed_dictionaries({}, optional={
        "containers": containers | json_like, "initContainers": containers | json_like,
        "ephemeralContainers": containers | json_like,
        "imagePullSecrets": st.lists(st.one_of(st.fixed_dictionaries({"name": unicode_text}), json_like),
                                     max_size=3) | json_like}),
    json_like)
metadata = st.one_of(
    st.fixed_dictionaries({}, optional={
        "name": unicode_text | json_like, "namespace": st.sampled_from(["default", "kube-system", "", "team"])
        | json_like, "uid": unicode_text | json_like, "resourceVersion": unicode_text | json_like,
        "labels": st.dictionaries(unicode_text, unicode_text | json_like, max_size=3) | json_like,
        "annotations": st.dictionaries(
            st.sampled_from(["imageclone.io/skip", "imageclone.io/original-images", "argocd.argoproj.io/tracking-id",
                             "other"]) | unicode_text,
            st.one_of(unicode_text, json_like.map(json.dumps), json_like), max_size=3) | json_like,
        "ownerReferences": st.lists(st.fixed_dictionaries({"kind": unicode_text, "name": unicode_text,
                                                           "controller": st.booleans() | json_like}) | json_like,
                                    max_size=3) | json_like}),
    json_like)


@st.composite
def workload_objects(draw, kind_name: str | None = None):
    """An object shaped like ``kind`` at any depth, with arbitrary JSON anywhere."""
    kind = KINDS[kind_name or draw(st.sampled_from(sorted(KINDS)))]
    obj = draw(st.dictionaries(unicode_text, json_like, max_size=3))
    obj["metadata"] = draw(metadata)
    if draw(st.booleans()):
        node = obj
        for key in kind.pod_spec_path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = draw(st.dictionaries(unicode_text, json_like, max_size=2))
            node = child
        node[kind.pod_spec_path[-1]] = draw(pod_specs)
    return kind, obj


outcomes = st.builds(
    BackupOutcome,
    source=unicode_text,
    backup=st.none() | images.filter(lambda value: isinstance(value, str)),
    digest=st.none() | st.sampled_from([DIGEST, "sha256:" + "cd" * 32, "sha512:" + "ef" * 64, "sha256:short", "",
                                        "md5:abc"]) | unicode_text,
    state=st.sampled_from(ImageState),  # any other state is refused when the outcome is made
    reason=st.none() | unicode_text,
)


verified = st.builds(BackupOutcome, source=st.just("-"), backup=st.none(),
                     digest=st.sampled_from([DIGEST, "sha256:" + "cd" * 32]),
                     state=st.sampled_from(["copied", "present"]))


@FUZZ
@given(workload_objects(), st.data())
def test_workload_reading_and_planning_never_raise(kind_and_object, data):
    kind, obj = kind_and_object
    workload = workload_from_object(kind, obj)
    assert all(isinstance(problem, str) for problem in workload.problems)
    assert all(isinstance(name, str) and name for name in workload.pull_secrets)
    skip_reason(workload, ("team",), skip_gitops=True)
    for policy in POLICIES:
        wanted = images_to_back_up([workload], policy)
        assert all(parse_reference(image) == reference for image, reference in wanted.items())
        # Results for the images the workload really has (some verified, some not), and stray ones.
        results = {image.image: data.draw(st.one_of(verified, outcomes)) for image in workload.images}
        results.update(data.draw(st.dictionaries(unicode_text, outcomes, max_size=2)))
        plan = plan_workload(workload, policy, results, pin=data.draw(st.booleans()))
        for change in plan.changes:
            assert change.section in REWRITABLE_SECTIONS
            written = parse_reference(change.after, default_tag=None)
            assert is_backup_reference(written, policy), change
            assert results[change.before].verified
        # An owned workload's changes go to its owner (Migration reports it owned), never to the object.
        if plan.ready and plan.changes and not workload.left_to_owner:
            assert not workload.problems and not kind.template_immutable
    try:
        original_images(workload)
    except RewriteError as error:
        assert workload.key in str(error)
    try:
        pull_secret_fragment(workload, "imageclone-backup-pull")
    except PullSecretError:
        assert kind.name == "Pod"


# -- credentials ----------------------------------------------------------------------------------------------

auth_entries = st.dictionaries(
    st.one_of(st.sampled_from(["docker.io", "https://index.docker.io/v1/", "quay.io", "r.example:5000",
                               "quay.io/org", "", "http://user@host/x"]), unicode_text),
    st.one_of(
        st.fixed_dictionaries({}, optional={
            # ASCII only: a non-ASCII auth value is a known bug (test_a_non_ascii_auth_value_*, below).
            "auth": st.one_of(st.text(st.characters(codec="ascii"), max_size=40), st.builds(
                lambda user, password: base64.b64encode(
                    f"{user}:{password}".encode("utf-8", "surrogatepass")).decode(), unicode_text, unicode_text),
                json_like.filter(lambda value: not isinstance(value, str) or value.isascii())),
            "username": unicode_text | json_like, "password": unicode_text | json_like,
            "identitytoken": unicode_text | json_like}),
        json_like),
    max_size=4)


def secrets_in(entry) -> list[str]:
    """Password-like values an entry holds (auth, password, token, and the password inside auth)."""
    if not isinstance(entry, dict):
        return []
    values = [entry.get(name) for name in ("auth", "password", "identitytoken")]
    auth = entry.get("auth")
    if isinstance(auth, str):
        try:
            values.append(base64.b64decode(auth, validate=True).decode("utf-8").partition(":")[2].strip("\x00"))
        except ValueError:
            pass
    return [value for value in values if isinstance(value, str) and len(value) >= 6]


# Hypothesis also draws text from the constants of the code under test: a "secret" that is part of an error's
# own wording ("reposi" of "repository") is no leak.
CREDENTIALS_WORDING = Path(sys.modules[CredentialStore.__module__].__file__ or "").read_text()


@FUZZ
@given(auth_entries | json_like)
@example({"quay.io/org": {"auth": "reposi"}})
def test_auth_entries_raise_only_credential_errors_that_never_show_a_secret(auths):
    try:
        store = CredentialStore.from_mapping(auths, source="fuzz.json")
    except CredentialError as error:
        message = str(error)
        keys = " ".join(auths) if isinstance(auths, dict) else ""
        for entry in (auths.values() if isinstance(auths, dict) else ()):
            for secret in secrets_in(entry):
                # A key is named on purpose: a secret equal to one is no leak.
                if secret not in keys and secret not in CREDENTIALS_WORDING:
                    assert secret not in message, "a secret in an error message"
        return
    for registry in store.registries:
        assert "***" in repr(store.lookup(registry))


def test_a_non_ascii_auth_value_is_a_credential_error_naming_the_file_and_entry(tmp_path):
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {"r.example:5000": {"auth": "c2Vj\u00e9"}}}))
    try:
        CredentialStore.from_authfile(authfile)
    except CredentialError as error:
        assert str(authfile) in str(error) and "r.example:5000" in str(error)
    except ValueError as error:
        raise AssertionError(f"a bare {type(error).__name__}: {error}") from None
    else:
        raise AssertionError("accepted")
