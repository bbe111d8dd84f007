"""Bad input: malformed workloads under a running controller, objects the API server refuses fed to
the engine directly, invalid controller flags and invalid module options.

What the API server (v1.34) does with a Deployment, checked with real creates below:

* accepts, so the controller meets them: an image of spaces, an image with leading/trailing
  spaces, upper case, non-ASCII, 600 characters, a newline, a NUL byte, too many colons, a short digest;
* refuses (422): an empty or missing image, a 500-character object name, a 500-character or
  non-ASCII container name, duplicate container names. These reach the engine only from another
  source (a manifest file, a buggy API proxy): ``test_objects_the_api_server_refuses_*`` feed them to it.
"""
from __future__ import annotations

import io
import json
import subprocess
from contextlib import redirect_stderr

import pytest
from builders import BUSYBOX, NAMESPACES, NGINX
from faults_support import Timer, events, new_namespace, simple_deployment, workload_images
from test_modules_lab import playbook

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome, plan_workload
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS, workload_from_object
from lab.controller_process import BINARY, ControllerProcess, controller_env
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]

# name -> the bad image, and what the engine says about it. The API server accepts all of these.
ACCEPTED_BAD_IMAGES = {
    "spaces": ("   ", "contains whitespace"),
    "padded": (" nginx:1.27 ", "contains whitespace"),
    "upper": ("NGINX:Latest", "invalid image reference"),
    "unicode": ("nginx:1.27\u00e9", "non-ASCII"),
    "long": ("a" * 600, "invalid image reference 'aaaa"),  # (Event messages are bounded: the verdict is cut)
    "newline": ("nginx\n:1.27", "contains whitespace"),
    "nul": ("nginx\x00:1.27", "control character"),
    "colons": ("nginx:1:2:3", "more than one ':'"),
    "short-digest": ("nginx@sha256:abc", "invalid image reference"),
}


def test_malformed_workloads_are_reported_and_skipped_while_the_controller_keeps_converging(lab, namespace, tmp_path):
    timer = Timer()
    admin = lab.admin_api()
    good = lab.source_image(NGINX)
    admin.create(DEPLOYMENT, namespace, simple_deployment("good-before", {"main": good}))
    for name, (image, _) in ACCEPTED_BAD_IMAGES.items():
        # A good sidecar too: all of a workload or nothing, so it must not be rewritten either.
        admin.create(DEPLOYMENT, namespace, simple_deployment(f"bad-{name}", {
            "main": image, "side": lab.source_image(BUSYBOX)}))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as controller:
        prefix = controller.repository
        controller.wait_leader_ready()
        wait_for(lambda: controller.metric("imageclone_reconcile_total", result="blocked") >= len(ACCEPTED_BAD_IMAGES),
                 "every malformed workload reconciled", timeout=60)
        timer.mark("every malformed workload blocked")
        admin.create(DEPLOYMENT, namespace, simple_deployment("good-after", {"main": good}))
        wait_for(lambda: all(workload_images(admin, namespace)[f"Deployment/{name}"][0].startswith(prefix + ":")
                             for name in ("good-before", "good-after")), "the good workloads rewritten")
        timer.mark("the good workloads rewritten, the one created after too")
        warnings = wait_for(lambda: (found := {e["involvedObject"]["name"]: e for e in events(admin, namespace)
                                               if e["reason"] == "RewriteBlocked"})
                            and len(found) == len(ACCEPTED_BAD_IMAGES) and found,
                            "a RewriteBlocked event per malformed workload")
        assert controller.running() and controller.get("/healthz")[0] == 200
        assert controller.metric("imageclone_reconcile_failures_total", reason="internal_error") == 0
        # Blocked for bad input is final until the object changes: not retried.
        assert controller.metric("imageclone_workqueue_retry_waiting") == 0
        log = controller.log_text()
    assert "reconcile crashed" not in log and "Traceback" not in log
    for name, (image, problem) in ACCEPTED_BAD_IMAGES.items():
        stored = admin.get(DEPLOYMENT, namespace, f"bad-{name}")
        containers = stored["spec"]["template"]["spec"]["containers"]
        assert [c["image"] for c in containers] == [image, lab.source_image(BUSYBOX)], name
        assert ORIGINAL_IMAGES not in (stored["metadata"].get("annotations") or {})
        event = warnings[f"bad-{name}"]
        assert event["type"] == "Warning" and "containers 'main'" in event["message"], event["message"]
        assert problem in event["message"], (name, event["message"])


@pytest.mark.parametrize(("label", "body", "refusal"), [
    ("empty image", simple_deployment("empty", {"main": ""}), "Required value"),
    ("missing image", {**simple_deployment("missing", {"main": "x"}), "spec": {
        "selector": {"matchLabels": {"app": "m"}}, "template": {"metadata": {"labels": {"app": "m"}},
                                                                 "spec": {"containers": [{"name": "main"}]}}}},
     "Required value"),
    ("500-character name", {**simple_deployment("long-name", {"main": "nginx:1.27"}),
                            "metadata": {"name": "a" * 500}}, "must be no more than 253 characters"),
    ("500-character container name", simple_deployment("long-container", {"c" * 500: "nginx:1.27"}), "name"),
    ("non-ASCII container name", simple_deployment("unicode-container", {"m\u00e4in": "nginx:1.27"}), "name"),
])
def test_objects_the_api_server_refuses_are_blockers_for_the_engine(lab, namespace, label, body, refusal):
    with pytest.raises(KubeApiError) as refused:
        lab.admin_api().create(DEPLOYMENT, namespace, body, dry_run=True)
    assert refused.value.invalid and refusal in str(refused.value)

    raw = {**body, "metadata": {**body["metadata"], "namespace": namespace, "resourceVersion": "1"}}
    workload = workload_from_object(DEPLOYMENT, raw)
    outcomes = {image.image: BackupOutcome(image.image, None, "sha256:" + "a" * 64, "copied")
                for image in workload.images}
    plan = plan_workload(workload, NamingPolicy("flat", "backup.example/ns/images"), outcomes)
    if label in ("empty image", "missing image"):
        assert not plan.ready and "image is empty or missing" in plan.blockers[0], plan.blockers
        # Through the migration service: reported as blocked, and nothing is sent.
        api = _NoWrites()
        report = Migration(api, _Verified(), Scope()).rewrite(workload, outcomes)
        assert report.state == "blocked" and "containers 'main'" in report.reason and api.calls == []
    else:
        # Names are the API server's to validate: the engine plans by image (and such an object cannot exist).
        assert plan.ready


def test_duplicate_container_names_are_a_blocker_for_the_engine(lab, namespace):
    body = simple_deployment("dup", {"main": lab.source_image(NGINX)})
    body["spec"]["template"]["spec"]["containers"].append({"name": "main", "image": lab.source_image(BUSYBOX)})
    with pytest.raises(KubeApiError) as refused:
        lab.admin_api().create(DEPLOYMENT, namespace, body, dry_run=True)
    assert "Duplicate value" in str(refused.value)
    workload = workload_from_object(DEPLOYMENT, {**body, "metadata": {**body["metadata"], "namespace": namespace}})
    outcomes = {image.image: BackupOutcome(image.image, None, "sha256:" + "a" * 64, "copied")
                for image in workload.images}
    plan = plan_workload(workload, NamingPolicy("flat", "backup.example/ns/images"), outcomes)
    assert not plan.ready and any("main" in blocker for blocker in plan.blockers), plan


class _NoWrites:
    """A KubeApi stand-in that records (and refuses) any call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.writes = 0

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f"the engine called KubeApi.{name} for a blocked workload")

        return call


class _Verified:
    """A BackupService stand-in: only what Migration.rewrite reads."""

    policy = NamingPolicy("flat", "backup.example/ns/images")

    class settings:  # noqa: N801 - mimics BackupSettings' attributes
        pin = True
        dry_run = False


# -- controller flags ---------------------------------------------------------------------------------------


def usage_error(argv: list[str], environ: dict[str, str] | None = None) -> str:
    from imageclone_controller.cli import parse

    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        parse(argv, environ or {})
    assert exited.value.code == 2, stderr.getvalue()
    return stderr.getvalue()


# Cases tests/unit/controller/test_ctrl_cli.py and test_controller_cli.py do not cover.
@pytest.mark.parametrize(("argv", "message"), [
    (["--logFormat=xml"], "argument --logFormat: invalid choice: 'xml'"),
    (["--namespace=Bad_NS"], "--namespace 'Bad_NS' is not a valid namespace name"),
    (["--leaderElectionID=Bad_ID"], "--leaderElectionID 'Bad_ID' is not a valid Kubernetes object name"),
    (["--leaderElectionNamespace=Bad_NS"], "--leaderElectionNamespace 'Bad_NS' is not a valid namespace name"),
    (["--pullSecret=Bad_Name", "--backupRegistryUser=u", "--backupRegistryPassword=p"], "--pullSecret 'Bad_Name'"),
    (["--certsDir=/nonexistent"], "--certsDir '/nonexistent': no such directory"),
    (["--certsDir=/etc/hostname"], "--certsDir '/etc/hostname': no such directory"),
    (["--kubeconfig=/nonexistent"], "--kubeconfig '/nonexistent': no such file"),
    (["--sourceAuthFile=/nonexistent"], "--sourceAuthFile '/nonexistent': no such file"),
    (["--backupAuthFile=/etc"], "--backupAuthFile '/etc': no such file"),
    (["--backupRegistryUser=a:b", "--backupRegistryPassword=p"], "--backupRegistryUser must not contain ':'"),
    (["--workers=abc"], "argument --workers: invalid integer 'abc'"),
    (["--workers=1.5"], "argument --workers: invalid integer '1.5'"),
    (["--resync=1e9h"], "argument --resync: invalid duration '1e9h'"),
    (["--metricsAddr=[::1"], "invalid address '[::1'"),
])
def test_more_bad_flags_exit_2_naming_the_flag(argv, message):
    error = usage_error(["--backupRegistry=r.example/x", *argv])
    assert message in error and "Traceback" not in error


@pytest.mark.parametrize("registry", ["r\u00e9gistry.example/x", "r.example/x y", "R.EXAMPLE/UPPER",
                                      "r.example/" + "a" * 5000, "r.example/x\u200b"])
def test_unusable_backup_registries_exit_2_naming_the_flag(registry):
    error = usage_error([f"--backupRegistry={registry}"])
    assert "--backupRegistry" in error and "Traceback" not in error
    assert len(error) < 12_000  # the 5000-character value is quoted, not repeated endlessly


def test_a_password_without_a_username_exits_2():
    error = usage_error(["--backupRegistry=r.example/x"], {"IMAGECLONE_BACKUP_PASSWORD": "only-a-password"})
    assert "username is missing" in error and "only-a-password" not in error


def test_an_absurd_worker_count_exits_2():
    error = usage_error(["--backupRegistry=r.example/x", "--workers=100000000"])
    assert "--workers" in error


def test_the_real_binary_names_the_flag_and_never_echoes_a_secret(tmp_path):
    broken = tmp_path / "auth.json"
    broken.write_text('{"auths": {"r.example": {"auth": "c2VjcmV0LXZhbHVlLTQy"}')  # base64 of secret-value-42
    result = subprocess.run([str(BINARY), "--backupRegistry=r.example/x", f"--backupAuthFile={broken}",
                             "--workers=0"], capture_output=True, text=True, env=controller_env(), timeout=60)
    assert result.returncode == 2 and "--workers" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([str(BINARY), "--backupRegistry=r.example/x", f"--backupAuthFile={broken}"],
                            capture_output=True, text=True, env=controller_env(), timeout=60)
    assert result.returncode == 2 and "unusable credentials" in result.stderr and str(broken) in result.stderr
    assert "c2VjcmV0LXZhbHVlLTQy" not in result.stderr and "secret-value-42" not in result.stderr
    assert "Traceback" not in result.stderr


# -- module options ------------------------------------------------------------------------------------------

# task name -> module, options, the text the failure message must hold.
MODULE_CASES = {
    "parallel is not an int": ("image_backup", {"images": ["nginx"], "parallel": "many"}, "argument 'parallel'"),
    "copy_timeout is not an int": ("image_backup", {"images": ["nginx"], "copy_timeout": "1h"},
                                   "argument 'copy_timeout'"),
    "pin is not a bool": ("image_backup", {"images": ["nginx"], "pin": "maybe"}, "argument 'pin'"),
    "an unknown option": ("image_backup", {"images": ["nginx"], "backup_regsitry": "x"},
                          "Unsupported parameters for (imageclone.backup.image_backup) module: backup_regsitry"),
    "certs_dir does not exist": ("image_backup", {"images": ["nginx"], "certs_dir": "/nonexistent"},
                                 "certs_dir /nonexistent is not a directory"),
    "an empty image": ("image_backup", {"images": [""]}, "invalid image reference '': reference is empty"),
    "an empty backup_registry": ("image_backup", {"images": ["nginx"], "backup_registry": ""},
                                 "flat target '' is not a repository name"),
    "a malformed source_authfile": ("image_backup", {"images": ["nginx"], "source_authfile": "@BROKEN@"},
                                    "is not valid JSON (line 1"),
    "a backup in use outside the backup registry": (
        "image_backup", {"images": [], "backups_in_use": {"nginx:1.27": "nginx:1.27"}},
        "backups_in_use: 'nginx:1.27' does not point into the backup registry"),
    "a backup in use with an invalid original": (
        "image_backup", {"images": [], "backups_in_use": {"@BACKUP@:x_1": "Not A Reference"}},
        "backups_in_use: invalid image reference 'Not A Reference'"),
    "workloads entries are not dicts": ("workload_rewrite", {"workloads": ["web"]},
                                        "Elements value for option 'workloads'"),
    "wait is not a bool": ("workload_rewrite", {"wait": "sometimes"}, "argument 'wait'"),
    "check_backups is not a bool": ("workload_images_info", {"check_backups": "perhaps"}, "argument 'check_backups'"),
    "kubeconfig is not a kubeconfig": ("workload_images_info", {"kubeconfig": {"not": "a kubeconfig"}},
                                       "could not load the Kubernetes configuration"),
    "pull_secret is not a Secret name": ("workload_rewrite", {
        "pull_secret": "Bad_Name!", "backup_username": "u", "backup_password": "long-enough-not-to-mask",
        "kubeconfig": "@KUBECONFIG@", "namespaces": ["@NAMESPACE@"]}, "pull_secret"),
    "namespaces holds an invalid name": ("workload_images_info", {"kubeconfig": "@KUBECONFIG@",
                                                                  "namespaces": ["Bad_NS!"]}, "namespaces"),
}


@pytest.fixture(scope="module")
def module_results(lab, tmp_path_factory):
    """Every case of ``MODULE_CASES`` as one task (``ignore_errors``) of one playbook: their results."""
    workdir = tmp_path_factory.mktemp("module-options")
    broken = workdir / "broken-auth.json"
    broken.write_text('{"auths": {"r.example": {"auth": "c2VjcmV0LXZhbHVlLTQy"}')
    namespace = new_namespace(lab, "faults-options")
    admin = lab.admin_api()
    admin.create(DEPLOYMENT, namespace, simple_deployment("web", {"main": lab.source_image(NGINX)}))
    substitutions = {"@BACKUP@": f"{lab.config.backup_registry}/faults/options", "@BROKEN@": str(broken),
                     "@KUBECONFIG@": str(lab.kubeconfig), "@NAMESPACE@": namespace}

    tasks = []
    for name, (module, options, _) in MODULE_CASES.items():
        arguments = {"backup_registry": f"{lab.config.backup_registry}/faults/options",
                     **_substitute(options, substitutions)}
        tasks.append({"name": name, f"imageclone.backup.{module}": arguments, "ignore_errors": True})
    yield playbook(workdir, tasks)
    admin.delete(NAMESPACES, None, namespace)


def _substitute(value, substitutions):
    if isinstance(value, str):
        for marker, replacement in substitutions.items():
            value = value.replace(marker, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(item, substitutions) for item in value]
    if isinstance(value, dict):
        return {_substitute(key, substitutions): _substitute(item, substitutions) for key, item in value.items()}
    return value


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_invalid_module_options_fail_the_task_naming_the_option(module_results, case):
    result = module_results[case]
    expected = MODULE_CASES[case][2]
    assert result.get("failed") is True, result
    assert expected in result["msg"], result["msg"]
    assert "Traceback" not in result["msg"] and "c2VjcmV0LXZhbHVlLTQy" not in json.dumps(result)
