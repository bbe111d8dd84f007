"""image_backup in-process: option checks, real copies into the lab's backup registry, check mode, no_log."""
from __future__ import annotations

import base64

import pytest

from ansible_collections.imageclone.backup.plugins.modules import image_backup
from lab.lab import BACKUP_USER

NGINX = "library/nginx:1.27"
REDIS = "library/redis:7.2"
MASKED = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def registry_requests(lab) -> tuple[int, int]:
    return len(lab.registry_requests("registry-source")), len(lab.registry_requests("registry-backup"))


def secret_forms(password: str) -> list[str]:
    """The password and the encodings an auth header or auth file would give it."""
    return [password, base64.b64encode(f"{BACKUP_USER}:{password}".encode()).decode()]


# -- options -------------------------------------------------------------------------------------


def test_images_are_required(run_module, backup_args):
    run = run_module(image_backup, backup_args)
    assert run.failed and "missing required arguments: images" in run.result["msg"]


def test_backup_registry_is_required(run_module, lab):
    run = run_module(image_backup, {"images": [lab.source_image(NGINX)]})
    assert run.failed and "missing required arguments: backup_registry" in run.result["msg"]


def test_naming_must_be_flat_or_nested(run_module, lab, backup_args):
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(NGINX)], "naming": "deep"})
    assert run.failed
    assert "naming" in run.result["msg"] and "flat, nested" in run.result["msg"] and "deep" in run.result["msg"]


@pytest.mark.parametrize("option, value", [("parallel", 0), ("per_registry", 0), ("copy_timeout", 0),
                                           ("retry_times", -1)])
def test_integer_options_have_a_floor(run_module, lab, backup_args, option, value):
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(NGINX)], option: value})
    assert run.failed and run.result["msg"].startswith(f"{option} must be at least")


def test_a_username_needs_a_password(run_module, lab, backup_args, monkeypatch):
    monkeypatch.delenv("IMAGECLONE_BACKUP_PASSWORD", raising=False)
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(NGINX)], "backup_username": "bob"})
    assert run.failed and "backup_password" in run.result["msg"]


def test_invalid_references_are_all_named_and_nothing_is_contacted(run_module, lab, backup_args):
    before = registry_requests(lab)
    run = run_module(image_backup, {**backup_args, "images": [
        lab.source_image(NGINX), "Nginx:1.27", "nginx:1.27:extra", "nginx@sha256:short",
    ]})
    assert run.failed
    message = run.result["msg"]
    assert message.startswith("3 invalid image reference(s), nothing was copied")
    for culprit in ("'Nginx:1.27'", "'nginx:1.27:extra'", "'nginx@sha256:short'"):
        assert culprit in message
    assert lab.source_image(NGINX) not in message
    assert registry_requests(lab) == before


def test_an_invalid_backup_registry_is_a_clear_error(run_module, lab, backup_args):
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(NGINX)],
                                    "backup_registry": "backup.example.com/Upper/Case"})
    assert run.failed and "flat target 'backup.example.com/Upper/Case'" in run.result["msg"]


def test_an_unreadable_authfile_is_a_clear_error(run_module, lab, backup_args, tmp_path):
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(NGINX)],
                                    "backup_authfile": str(tmp_path / "absent.json")})
    assert run.failed and f"cannot read auth file {tmp_path / 'absent.json'}" in run.result["msg"]


# -- backups -------------------------------------------------------------------------------------


@pytest.mark.parametrize("copier", ["skopeo", "native"])
def test_copies_then_reports_present(run_module, lab, backup_args, copier):
    images = [lab.source_image(NGINX), lab.source_image(REDIS), lab.source_image(NGINX)]
    backup_args = {**backup_args, "copier": copier}
    first = run_module(image_backup, {**backup_args, "images": images})

    assert not first.failed and first.result["changed"] is True
    assert first.result["copied"] == images[:2]
    assert (first.result["present"], first.result["missing"], first.result["failed_images"]) == ([], [], [])
    nginx = first.result["images"][0]
    digest = lab.config.seeds[NGINX]
    assert set(nginx) == {"source", "backup", "digest", "state", "reason", "referrers_copied"}
    assert nginx["source"] == images[0] and nginx["state"] == "copied" and nginx["digest"] == digest
    assert nginx["referrers_copied"] == 0, "the lab's seed images are unsigned"
    assert nginx["backup"].startswith(backup_args["backup_registry"] + ":") and nginx["backup"].endswith("@" + digest)
    assert len(first.result["images"]) == 2, "a repeated image is one entry"

    second = run_module(image_backup, {**backup_args, "images": images})
    assert second.result["changed"] is False
    assert second.result["present"] == images[:2] and second.result["copied"] == []
    assert [entry["backup"] for entry in second.result["images"]] == [e["backup"] for e in first.result["images"]]


def test_check_mode_copies_nothing(run_module, lab, backup_args):
    image = lab.source_image(NGINX)
    mark = len(lab.registry_requests("registry-backup"))
    run = run_module(image_backup, {**backup_args, "images": [image], "_ansible_check_mode": True})

    assert run.result["changed"] is True and run.result["copied"] == [image]
    assert run.result["images"][0]["reason"] == "check mode: would copy"
    assert {r.method for r in lab.registry_requests("registry-backup")[mark:]} == {"HEAD"}
    again = run_module(image_backup, {**backup_args, "images": [image], "_ansible_check_mode": True})
    assert again.result["copied"] == [image], "nothing was stored by the first check run"


def test_a_missing_image_fails_the_task_unless_tolerated(run_module, lab, backup_args):
    present, missing = lab.source_image(NGINX), lab.source_image("library/nginx:no-such-tag")
    run = run_module(image_backup, {**backup_args, "images": [present, missing]})

    assert run.failed and run.exit_code == 1
    assert run.result["msg"].startswith("1 of 2 image(s) are not backed up: ")
    assert f"{missing}: missing: " in run.result["msg"]
    assert run.result["missing"] == [missing] and run.result["copied"] == [present]
    assert run.result["changed"] is True, "the other image was copied all the same"

    tolerated = run_module(image_backup, {**backup_args, "images": [present, missing], "fail_on_missing": False})
    assert not tolerated.failed and tolerated.result["missing"] == [missing]
    assert tolerated.result["present"] == [present] and tolerated.result["changed"] is False


def test_an_unreachable_registry_is_failed_even_when_missing_is_tolerated(run_module, backup_args):
    image = "127.0.0.1:9/library/nginx:1.27"  # discard port: nothing listens
    run = run_module(image_backup, {**backup_args, "images": [image], "fail_on_missing": False,
                                    "retry_times": 0})
    assert run.failed and run.result["failed_images"] == [image]
    assert run.result["images"][0]["state"] == "failed" and image in run.result["msg"]


def test_an_empty_list_is_nothing_to_do(run_module, backup_args):
    run = run_module(image_backup, {**backup_args, "images": []})
    assert not run.failed and run.result["changed"] is False and run.result["images"] == []


# -- secrets ---------------------------------------------------------------------------------------


def login_args(lab, backup_args) -> dict:
    args = {key: value for key, value in backup_args.items() if key != "backup_authfile"}
    return {**args, "backup_username": BACKUP_USER, "backup_password": lab.backup_password()}


def test_the_password_never_appears_on_success(run_module, lab, backup_args):
    run = run_module(image_backup, {**login_args(lab, backup_args), "images": [lab.source_image(NGINX)]})

    assert not run.failed and run.result["copied"] == [lab.source_image(NGINX)], "the login works"
    assert run.result["invocation"]["module_args"]["backup_password"] == MASKED
    for secret in secret_forms(lab.backup_password()):
        assert secret not in run.output


def test_the_password_never_appears_on_failure_even_inside_a_message(run_module, lab, backup_args):
    password = lab.backup_password()
    # An invalid reference is quoted in the failure message: here it carries the password.
    run = run_module(image_backup, {**login_args(lab, backup_args), "images": [f"bad ref {password}"]})

    assert run.failed and "invalid image reference" in run.result["msg"]
    for secret in secret_forms(password):
        assert secret not in run.output


def test_a_wrong_password_fails_without_showing_it(run_module, lab, backup_args):
    wrong = "Wrong-" + lab.backup_password()[::-1]
    args = {**login_args(lab, backup_args), "backup_password": wrong, "images": [lab.source_image(NGINX)]}
    run = run_module(image_backup, args)

    assert run.failed and run.result["failed_images"] == [lab.source_image(NGINX)]
    assert wrong not in run.output and lab.backup_password() not in run.output


def test_the_password_can_come_from_the_environment(run_module, lab, backup_args, monkeypatch):
    monkeypatch.setenv("IMAGECLONE_BACKUP_PASSWORD", lab.backup_password())
    args = {key: value for key, value in login_args(lab, backup_args).items() if key != "backup_password"}
    run = run_module(image_backup, {**args, "images": [lab.source_image(NGINX)]})

    assert not run.failed and run.result["copied"] == [lab.source_image(NGINX)]
    assert run.result["invocation"]["module_args"]["backup_password"] == MASKED
    assert lab.backup_password() not in run.output


def test_the_authfile_can_come_from_the_environment(run_module, lab, backup_args, monkeypatch):
    monkeypatch.setenv("IMAGECLONE_BACKUP_AUTHFILE", str(lab.backup_authfile))
    args = {key: value for key, value in backup_args.items() if key != "backup_authfile"}
    run = run_module(image_backup, {**args, "images": [lab.source_image(NGINX)]})
    assert not run.failed and run.result["copied"] == [lab.source_image(NGINX)]
