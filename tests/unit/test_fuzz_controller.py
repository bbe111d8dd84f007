"""Fuzzing the controller's own input handling: the informer cache's projection of arbitrary objects,
flag parsing of arbitrary values, and log redaction of arbitrary passwords.

* ``cache.Store.encode`` never raises on an object the API server could send (the informer would
  otherwise retry its whole LIST forever), and what the engine reads back from the projection is
  what it reads from the full object;
* ``cli.parse`` either returns a config or exits 2 with a message, whatever the flag values;
* a password of any shape never reaches a log line, raw or in one of the encodings it travels in.
"""
from __future__ import annotations

import base64
import io
import json
import logging
from contextlib import redirect_stderr
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_fuzz_engine import json_like, unicode_text

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    skip_reason,
    workload_from_object,
)
from imageclone_controller.cache import Store
from imageclone_controller.cli import parse
from imageclone_controller.log import fields, setup_logging

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def engine_view(workload) -> tuple:
    """What reconciling a workload depends on."""
    return (workload.key, workload.uid, tuple((i.section, i.container, i.image) for i in workload.images),
            workload.pull_secrets, workload.owner, workload.managed_by, workload.problems,
            skip_reason(workload, ("team",)), workload.annotations.get("imageclone.io/original-images"))


text = st.one_of(unicode_text, st.sampled_from(["", "web", "team", "kube-system", "main", "nginx:1.27",
                                                 "quay.io/org/app@sha256:" + "ab" * 32]))
containers = st.lists(st.fixed_dictionaries({}, optional={"name": text, "image": text,
                                                         "env": st.lists(json_like, max_size=2)}), max_size=3)


@st.composite
def api_objects(draw):
    """Objects as a validating API server could serve them: the fields image-clone reads have their
    API types (strings, string maps, lists of objects), any of them may be absent, anything else goes."""
    kind = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    metadata = draw(st.fixed_dictionaries({}, optional={
        "name": text, "namespace": text, "uid": text, "resourceVersion": text,
        "labels": st.dictionaries(text, text, max_size=3),
        "annotations": st.dictionaries(st.sampled_from(["imageclone.io/skip", "imageclone.io/original-images",
                                                        "argocd.argoproj.io/tracking-id", "imageclone.io/x"]) | text,
                                       text | json_like.map(json.dumps), max_size=3),
        "ownerReferences": st.lists(st.fixed_dictionaries({"kind": text, "name": text},
                                                          optional={"controller": st.booleans()}), max_size=3),
        "managedFields": st.lists(json_like, max_size=2)}))
    spec = draw(st.fixed_dictionaries({}, optional={
        "containers": containers, "initContainers": containers, "ephemeralContainers": containers,
        "imagePullSecrets": st.lists(st.fixed_dictionaries({}, optional={"name": text}), max_size=2),
        "volumes": st.lists(json_like, max_size=2)}))
    obj = {"metadata": metadata, "status": draw(json_like)}
    if draw(st.booleans()):
        node = obj
        for key in kind.pod_spec_path[:-1]:
            node = node.setdefault(key, {})
        node[kind.pod_spec_path[-1]] = spec
    return kind, obj


@FUZZ
@given(api_objects())
def test_the_cache_projection_never_raises_and_reads_back_as_the_same_workload(kind_and_object):
    kind, obj = kind_and_object
    store = Store(kind)
    key, entry = store.encode(obj)
    direct = workload_from_object(kind, obj)
    projected = workload_from_object(kind, entry.object())
    assert key == direct.key
    assert engine_view(projected) == engine_view(direct)
    assert store.upsert(obj) == (key, True) and store.upsert(obj) == (key, False)


@pytest.mark.parametrize("owners", [5, 1.5, True])
def test_the_cache_projection_tolerates_any_owner_references(owners):
    obj = {"metadata": {"name": "web", "namespace": "team", "ownerReferences": owners},
           "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}}
    assert workload_from_object(KINDS["Deployment"], obj).owner is None
    Store(KINDS["Deployment"]).encode(obj)


# -- flags -----------------------------------------------------------------------------------------------

FLAGS = ("--backupRegistry", "--backupRegistryUser", "--backupRegistryPassword", "--ignoreNamespace",
         "--kubeconfig", "--leaderElectionID", "--leaderElectionNamespace", "--backupAuthFile", "--sourceAuthFile",
         "--certsDir", "--insecureRegistry", "--naming", "--kinds", "--namespace", "--workers", "--resync",
         "--metricsAddr", "--logFormat", "--pullSecret", "--dryRun")
PATH_FLAGS = ("--kubeconfig", "--backupAuthFile", "--sourceAuthFile", "--certsDir")
values = st.one_of(unicode_text.filter(lambda text: "\x00" not in text),
                   st.sampled_from(["", "0", "-1", "1e9", "true", "a,b,,c", "Deployment,,Pod", "[::1]:0", ":0",
                                    "/", "/nonexistent", "..", "r.example/x", "1h-1m", "99999999999999999999"]),
                   st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=300, max_size=3000))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FLAGS), values), max_size=4),
       st.booleans())
@example([("--backupRegistry", "r.example/x"), ("--resync", "1" * 400 + "h")], True)
@example([("--backupRegistry", "r.example/x"), ("--metricsAddr", "h:" + "9" * 400)], True)
def test_any_flag_values_give_a_config_or_exit_2(flags, with_registry):
    # A path component over NAME_MAX is a known crash: test_an_overlong_path_flag_exits_2, below.
    assume(not any(flag in PATH_FLAGS and any(len(part.encode("utf-8", "surrogatepass")) > 255
                                             for part in value.split("/")) for flag, value in flags))
    argv = (["--backupRegistry=r.example/x"] if with_registry else []) + [f"{flag}={value}" for flag, value in flags]
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        try:
            config = parse(argv, {})
        except SystemExit as exited:
            assert exited.code == 2, stderr.getvalue()
            assert "imgCloneCtrl: error:" in stderr.getvalue() and "Traceback" not in stderr.getvalue()
            return
    assert config.backup_registry and config.workers >= 1
    password = dict(flags).get("--backupRegistryPassword")
    if password and len(password) >= 4:
        assert password not in repr(config)


@pytest.mark.parametrize("flag", PATH_FLAGS)
def test_an_overlong_path_flag_exits_2(flag):
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        parse(["--backupRegistry=r.example/x", f"{flag}={'0' * 300}"], {})
    assert exited.value.code == 2 and flag in stderr.getvalue()


# -- log redaction -----------------------------------------------------------------------------------------

passwords = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=8, max_size=40),
    st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S"]), min_size=8, max_size=40),
    st.sampled_from(["pa$$w0rd/with:colons&amp;", 'quote"back\\slash', "new\nline\ttab", "ünïcødé-pässwörd",
                     "%2F%3A-already-quoted", "emoji-\U0001f511-key"]),
)


@FUZZ
@given(passwords, st.sampled_from(["json", "text"]), st.sampled_from(["bob", "imageclone", "u"]))
def test_a_password_of_any_shape_never_reaches_a_log_line(password, fmt, username):
    stream = io.StringIO()
    setup_logging(fmt, secrets=[password], username=username, stream=stream)
    log = logging.getLogger("imageclone.fuzz")
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    carriers = [password, quote(password, safe=""), json.dumps(password)[1:-1], basic, basic.rstrip("="),
                f"Authorization: Basic {basic}", json.dumps({"auths": {"r": {"auth": basic}}}),
                json.dumps({"password": password}, ensure_ascii=False)]
    for carrier in carriers:
        log.warning("registry said %s", carrier)
        log.info("request", extra=fields(detail=carrier, nested={"value": carrier}))
    try:
        raise RuntimeError(f"failed with {password}")
    except RuntimeError:
        log.exception("boom")
    output = stream.getvalue()
    for form in {password, basic, basic.rstrip("=")}:
        assert form not in output
    if fmt == "json":
        # Decoded, the lines hold no secret either (a masked escape sequence may leave a line that is not
        # JSON any more: test_a_masked_json_escape_keeps_the_line_valid_json, below).
        for line in output.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            assert password not in json.dumps(record, ensure_ascii=False)


@pytest.mark.parametrize("password", ["p\u00e4ss-word-1", 'pa"ss-word-1', "\x1fcontrol-1"])
def test_a_json_escaped_password_in_a_message_is_masked_in_json_logs(password):
    stream = io.StringIO()
    setup_logging("json", secrets=[password], stream=stream)
    logging.getLogger("imageclone.fuzz").warning("registry answered %s", json.dumps({"password": password}))
    for line in stream.getvalue().splitlines():
        message = json.loads(line)["msg"]
        assert password not in message and json.dumps(password)[1:-1] not in message, message
