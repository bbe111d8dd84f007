"""Flag parsing: the seed's flags and meanings, the additions, and exit code 2 with a clear message."""
from __future__ import annotations

import base64
import json

import pytest

from imageclone_controller.cli import build_parser, check_with_engine, config_from_args, go_style_flags, parse
from imageclone_controller.config import ConfigError, parse_address, parse_duration

SEED_FLAGS = ("--backupRegistry", "--backupRegistryUser", "--backupRegistryPassword", "--ignoreNamespace",
              "--kubeconfig", "--leaderElectionID", "--leaderElectionNamespace", "--version", "-h")


def config(argv, environ=None, cluster=False, namespace=None):
    args = build_parser().parse_args(argv)
    return config_from_args(args, environ or {}, cluster=cluster, namespace=namespace)


def usage_error(capsys, argv, environ=None) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(argv, environ or {})
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_help_lists_every_seed_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["-h"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in SEED_FLAGS:
        assert flag in text


def test_seed_flags_keep_their_meaning():
    got = config(["--backupRegistry", "registry.example.com/backup/images/", "--backupRegistryUser=bob",
                  "--backupRegistryPassword=s3cret", "--ignoreNamespace=team-a", "--ignoreNamespace", "team-b,team-c",
                  "--leaderElectionID=my-lease", "--leaderElectionNamespace=ops"])
    assert got.backup_registry == "registry.example.com/backup/images"
    assert (got.backup_username, got.backup_password, got.password_on_argv) == ("bob", "s3cret", True)
    assert got.ignore_namespaces == ("team-a", "team-b", "team-c")
    assert (got.leader_election_id, got.leader_election_namespace) == ("my-lease", "ops")
    assert "s3cret" not in repr(got) and "s3cret" not in json.dumps(got.safe_summary())


def test_defaults_out_of_cluster_and_in_cluster(tmp_path):
    local = config(["--backupRegistry=r.example/x"])
    assert local.leader_election_id == "image-clone-controller" and local.leader_election_namespace == "default"
    assert local.metrics_addr == ("127.0.0.1", 8080) and local.log_format == "text"
    assert local.kinds == ("Deployment", "DaemonSet", "StatefulSet", "CronJob", "ReplicationController")
    assert local.workers == 16
    pod = config(["--backupRegistry=r.example/x"], cluster=True, namespace="image-clone")
    assert pod.metrics_addr == ("", 8080) and pod.log_format == "json"
    assert pod.leader_election_namespace == "image-clone"


def test_credentials_come_from_the_environment_and_are_not_argv():
    got = config(["--backupRegistry=r.example/x"],
                 {"IMAGECLONE_BACKUP_USERNAME": "bob", "IMAGECLONE_BACKUP_PASSWORD": "from-env"})
    assert (got.backup_username, got.backup_password, got.password_on_argv) == ("bob", "from-env", False)
    assert got.credential_source() == "environment"
    assert got.secrets() == ("from-env",)


def test_more_flags():
    got = config(["--backupRegistry=r.example/x", "--naming=nested", "--kinds=deployment,Job", "--kinds", "Pod",
                  "--workers=8", "--resync=1h30m", "--metricsAddr=127.0.0.1:0", "--logFormat=json",
                  "--pullSecret=backup-pull", "--backupRegistryUser=u", "--backupRegistryPassword=p", "--dryRun",
                  "--namespace=a,b", "--insecureRegistry=reg.local:5000"])
    assert got.naming == "nested" and got.kinds == ("Deployment", "Job", "Pod")
    assert got.workers == 8 and got.resync == 5400 and got.metrics_addr == ("127.0.0.1", 0)
    assert got.pull_secret == "backup-pull" and got.dry_run is True and got.namespaces == ("a", "b")
    assert got.insecure_registries == ("reg.local:5000",)
    assert config(["--backupRegistry=r.example/x", "--dryRun=false"]).dry_run is False


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    ([], "--backupRegistry is required"),
    (["--backupRegistry=r.example/x", "--kinds=Foo"], "unknown kind 'Foo'"),
    (["--backupRegistry=r.example/x", "--workers=0"], "--workers: must be at least 1"),
    (["--backupRegistry=r.example/x", "--resync=soon"], "invalid duration 'soon'"),
    (["--backupRegistry=r.example/x", "--metricsAddr=8080"], "invalid address '8080'"),
    (["--backupRegistry=r.example/x", "--naming=deep"], "invalid choice: 'deep'"),
    (["--backupRegistry=r.example/x", "--ignoreNamespace=Not_A_Namespace"], "not a valid namespace name"),
    (["--backupRegistry=r.example/x", "--backupRegistryUser=bob"], "password is missing"),
    (["--backupRegistry=r.example/x", "--backupAuthFile=/nonexistent"], "/nonexistent': no such file"),
    (["--backupRegistry=https://r.example/x"], "no scheme"),
    (["--backupRegistry=r.example/x", "--pullSecret=pull"], "--pullSecret needs"),
    (["--backupRegistry=r.example/x", "--backupRegistry"], "expected one argument"),
    (["--backupRegistry=r.example/x", "--dryRun=maybe"], "invalid boolean"),
    (["--backupReg=r.example/x"], "unrecognized arguments"),  # no abbreviations
    (["-backupReg=r.example/x"], "unrecognized arguments"),  # Go's single dash, still no abbreviations
    (["--backupRegistry=r.example/x", "--apiReadTimeout=0s"], "--apiReadTimeout: must be above 0"),
    (["--backupRegistry=r.example/x", "--logLevel=chatty"], "invalid choice: 'chatty'"),
])
def test_bad_flags_exit_2_with_a_clear_message(capsys, argv, message):
    error = usage_error(capsys, argv)
    assert message in error and "imgCloneCtrl -h" in error


def test_go_single_dash_flags_work_as_the_seed_binary_accepted_them(capsys):
    got = parse(["-backupRegistry=r.example/x", "-ignoreNamespace", "team-a", "-leaderElectionID=lease",
                 "-logLevel=debug", "-apiReadTimeout=5s", "-apiConnectTimeout", "1500ms"], {})
    assert got.backup_registry == "r.example/x" and got.ignore_namespaces == ("team-a",)
    assert got.leader_election_id == "lease" and got.log_level == "debug"
    assert (got.api_connect_timeout, got.api_read_timeout) == (1.5, 5.0)
    assert got.connection() == {"api_connect_timeout": 1.5, "api_read_timeout": 5.0}
    with pytest.raises(SystemExit) as exited:
        parse(["-version"], {})
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("imgCloneCtrl ")
    # A value that looks like a flag stays a value; so does everything after "--".
    assert go_style_flags(["-kubeconfig", "-weird", "--", "-version"], ["--kubeconfig", "--version"]) == [
        "--kubeconfig", "-weird", "--", "-version"]


def test_the_engine_validates_the_backup_target_and_auth_files(tmp_path, capsys):
    assert "without tag or digest" in usage_error(capsys, ["--backupRegistry=r.example/x:1.0"])
    broken = tmp_path / "auth.json"
    broken.write_text("{not json")
    assert "unusable credentials" in usage_error(capsys, ["--backupRegistry=r.example/x",
                                                          f"--backupAuthFile={broken}"])


def test_secrets_of_auth_files_are_collected_for_redaction(tmp_path):
    authfile = tmp_path / "auth.json"
    token = base64.b64encode(b"bob:file-secret").decode()
    authfile.write_text(json.dumps({"auths": {"r.example": {"auth": token}}}))
    got = config(["--backupRegistry=r.example/x", f"--backupAuthFile={authfile}"])
    secrets = check_with_engine(got)
    assert "file-secret" in secrets and token in secrets


def test_durations_and_addresses():
    assert [parse_duration(text) for text in ("90", "1.5", "30s", "10m", "1h30m", "250ms", "0")] == [
        90, 1.5, 30, 600, 5400, 0.25, 0]
    for bad in ("", "-5", "5x", "m", "1h-2m"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    assert parse_address(":8080") == ("", 8080) and parse_address("[::1]:9") == ("::1", 9)
    for bad in ("8080", "host:", "host:99999", "::1:80"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_every_engine_backup_option_is_a_flag_with_the_modules_validation(capsys):
    from imageclone_controller.engine import arguments
    from imageclone_controller.options import BACKUP_FLAGS

    assert set(BACKUP_FLAGS) == set(arguments.BACKUP_ARGUMENTS), "an engine option has no controller flag"
    got = config(["--backupRegistry=r.example/x", "--parallel=16", "--perRegistry=2", "--copyTimeout=120",
                  "--retryTimes=0", "--pin=false"])
    assert {key: got.backup_options()[key] for key in ("parallel", "per_registry", "copy_timeout", "retry_times",
                                                       "pin")} == {"parallel": 16, "per_registry": 2,
                                                                   "copy_timeout": 120, "retry_times": 0, "pin": False}
    defaults = config(["--backupRegistry=r.example/x"]).backup_options()
    for option, spec in arguments.BACKUP_ARGUMENTS.items():
        if "default" in spec and option != "insecure_registries":
            assert defaults[option] == spec["default"], option
    # The modules' minimums, named as flags.
    assert "--parallel must be at least 1, got 0" in usage_error(capsys, ["--backupRegistry=r.example/x",
                                                                          "--parallel=0"])
    # The modules' object-name rule: "a..b" is no Kubernetes name.
    assert "not a valid Kubernetes object name" in usage_error(capsys, ["--backupRegistry=r.example/x",
                                                                       "--leaderElectionID=a..b"])
    # The help text is the modules' documentation, with flags for option names.
    build_parser().print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "How many copies may run at the same time from one source registry" in text
    assert "O(" not in text and "C(" not in text


def test_the_username_falls_back_to_the_environment_like_the_modules(tmp_path):
    authfile = tmp_path / "auth.json"
    authfile.write_text("{}")
    got = config(["--backupRegistry=r.example/x", f"--backupAuthFile={authfile}"],
                 {"IMAGECLONE_BACKUP_USERNAME": "bob"})
    assert got.backup_username == "bob"
