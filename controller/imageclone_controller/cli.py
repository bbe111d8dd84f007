"""``imgCloneCtrl``: parse flags (the seed's names and meanings, plus a few), then run the manager.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or ``--version``/``-h``;
1 on a runtime failure (lost leadership, unusable cluster configuration);
2 for invalid flags or environment, with a message naming the flag.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import NoReturn

from imageclone_controller import __version__
from imageclone_controller.config import (
    DEFAULT_API_CONNECT_TIMEOUT,
    DEFAULT_API_READ_TIMEOUT,
    DEFAULT_LEADER_ELECTION_ID,
    DEFAULT_RESYNC,
    DEFAULT_WORKERS,
    ENV_PASSWORD,
    ENV_USERNAME,
    IN_CLUSTER_METRICS_ADDR,
    LOCAL_METRICS_ADDR,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    ControllerConfig,
    check_directory,
    check_namespace,
    check_object_name,
    check_readable_file,
    in_cluster,
    parse_address,
    parse_duration,
    parse_kinds,
    pod_namespace,
    split_list,
)

PROG = "imgCloneCtrl"
EXIT_USAGE = 2
_TRUE = frozenset({"1", "t", "true", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "off"})

DESCRIPTION = """\
Watches Kubernetes workloads, copies every image they use into the backup
registry, verifies each copy by digest, then rewrites the workloads to the
pinned backup reference. Only the elected leader (a coordination.k8s.io Lease)
does any work.

Backup registry credentials, first match wins per field: --backupRegistryUser /
--backupRegistryPassword (the password on argv is visible to every local user:
avoid), the environment variables IMAGECLONE_BACKUP_USERNAME /
IMAGECLONE_BACKUP_PASSWORD, then --backupAuthFile (a docker config.json, e.g. a
mounted kubernetes.io/dockerconfigjson Secret)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nRun '{self.prog} -h' for every flag.\n")


def _go_bool(text: str) -> bool:
    """Go's flag package accepts --flag, --flag=true and --flag=false; so do we."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _timeout(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return seconds


MAX_WORKERS = 256  # each worker is a thread and may run a skopeo copy; far beyond any useful value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WORKERS}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The flags; imports the engine, whose options they include (``ImportError`` when it is missing)."""
    from imageclone_controller import options
    from imageclone_controller.engine import kinds

    parser = _Parser(prog=PROG, description=DESCRIPTION, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    seed = parser.add_argument_group("flags")
    more = parser.add_argument_group("more flags")
    options.add_backup_flags(seed, more, boolean=_go_bool)
    seed.add_argument("--ignoreNamespace", metavar="NS", dest="ignore_namespaces", action="append",
                      help="namespace never touched; repeatable or comma-separated (kube-system is always ignored)")
    seed.add_argument("--kubeconfig", metavar="PATH",
                      help="kubeconfig to use; only needed out of cluster (in a pod the service account is used)")
    seed.add_argument("--leaderElectionID", metavar="NAME", dest="leader_election_id",
                      default=DEFAULT_LEADER_ELECTION_ID,
                      help="name of the coordination.k8s.io Lease used for leader election "
                           f"(default {DEFAULT_LEADER_ELECTION_ID})")
    seed.add_argument("--leaderElectionNamespace", metavar="NS", dest="leader_election_namespace",
                      help="namespace of that Lease (default: the pod's namespace, else 'default')")
    seed.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                      help="print the version and exit")

    more.add_argument("--kinds", metavar="KIND[,KIND]", action="append",
                      help=f"workload kinds to watch (default {','.join(kinds.DEFAULT_WATCHED)}; also "
                           f"{', '.join(name for name in kinds.KINDS if name not in kinds.DEFAULT_WATCHED)}; "
                           f"print the ClusterRole they need with --printClusterRole)")
    more.add_argument("--printClusterRole", action="store_true", dest="print_cluster_role",
                      help="print the ClusterRole the --kinds need (YAML) and exit")
    more.add_argument("--namespace", metavar="NS", dest="namespaces", action="append",
                      help="watch only these namespaces; repeatable or comma-separated (default: every "
                           "namespace; a Role per namespace then suffices)")
    more.add_argument("--workers", metavar="N", type=_positive_int, default=DEFAULT_WORKERS,
                      help=f"concurrent reconciles (default {DEFAULT_WORKERS})")
    more.add_argument("--resync", metavar="DURATION", type=_duration, default=DEFAULT_RESYNC,
                      help="re-reconcile (and re-verify the backups of) every workload this often "
                           "(default 30m; 0 disables)")
    more.add_argument("--metricsAddr", metavar="ADDR", dest="metrics_addr",
                      help=f"address of /metrics, /healthz and /readyz (default {IN_CLUSTER_METRICS_ADDR} "
                           f"in cluster, {LOCAL_METRICS_ADDR} outside; port 0 picks a free one)")
    more.add_argument("--logFormat", choices=LOG_FORMATS, dest="log_format",
                      help="log format (default json in cluster, text outside)")
    more.add_argument("--logLevel", choices=LOG_LEVELS, dest="log_level", default="info",
                      help="least severe messages logged (default info; debug adds every skipped workload "
                           "and lost lease race)")
    more.add_argument("--apiConnectTimeout", metavar="DURATION", type=_timeout, dest="api_connect_timeout",
                      default=DEFAULT_API_CONNECT_TIMEOUT,
                      help=f"give up connecting to the API server after this long (default "
                           f"{DEFAULT_API_CONNECT_TIMEOUT:g}s)")
    more.add_argument("--apiReadTimeout", metavar="DURATION", type=_timeout, dest="api_read_timeout",
                      default=DEFAULT_API_READ_TIMEOUT,
                      help=f"give up waiting for each read of an API server answer after this long (default "
                           f"{DEFAULT_API_READ_TIMEOUT:g}s; leader election uses its own, shorter ones)")
    more.add_argument("--pullSecret", metavar="NAME", dest="pull_secret",
                      help="create this docker-registry Secret with the backup login in each namespace and "
                           "reference it from rewritten workloads (needs the optional secrets ClusterRole)")
    more.add_argument("--dryRun", nargs="?", const=True, default=False, type=_go_bool, metavar="BOOL",
                      dest="dry_run", help="copy nothing and write nothing; log what would be done")
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                     *, cluster: bool | None = None, namespace: str | None = None) -> ControllerConfig:
    """Turn parsed flags plus environment into a validated config; raises ``ConfigError``."""
    from imageclone_controller.engine import kinds  # the engine knows the kinds

    environ = os.environ if environ is None else environ
    cluster = in_cluster(environ) if cluster is None else cluster
    from imageclone_controller import options

    if not args.backup_registry:
        raise ConfigError("--backupRegistry is required")
    backup = options.backup_options(args, environ)
    registry = backup["backup_registry"] = args.backup_registry.strip().rstrip("/")
    if "://" in registry or not registry:
        raise ConfigError(f"--backupRegistry {args.backup_registry!r}: give registry/repository, no scheme")
    problems = options.range_problems(backup)
    if problems:
        raise ConfigError("; ".join(problems))
    username, password = backup["backup_username"], backup["backup_password"]
    if bool(username) != bool(password) and not args.backup_authfile:
        missing = "password" if username else "username"
        raise ConfigError(f"a backup registry {missing} is missing: give both (flags or "
                          f"{ENV_USERNAME}/{ENV_PASSWORD}) or use --backupAuthFile")
    if username and ":" in username:
        raise ConfigError("--backupRegistryUser must not contain ':'")
    ignore = tuple(check_namespace(ns, "--ignoreNamespace") for ns in split_list(args.ignore_namespaces))
    lease_namespace = args.leader_election_namespace or namespace or (pod_namespace() if cluster else "default")
    metrics = args.metrics_addr or (IN_CLUSTER_METRICS_ADDR if cluster else LOCAL_METRICS_ADDR)
    if args.pull_secret:
        check_object_name(args.pull_secret, "--pullSecret")
        if not (username and password) and not args.backup_authfile:
            raise ConfigError("--pullSecret needs the backup registry's username and password")
    backup.update(
        backup_authfile=check_readable_file(backup["backup_authfile"], "--backupAuthFile"),
        source_authfile=check_readable_file(backup["source_authfile"], "--sourceAuthFile"),
        certs_dir=check_directory(backup["certs_dir"], "--certsDir"),
        insecure_registries=split_list(backup["insecure_registries"]),
    )
    return ControllerConfig(
        backup=backup,
        kinds=parse_kinds(args.kinds, kinds.KINDS, kinds.DEFAULT_WATCHED),
        namespaces=tuple(check_namespace(ns, "--namespace") for ns in split_list(args.namespaces)),
        ignore_namespaces=ignore,
        kubeconfig=check_readable_file(args.kubeconfig, "--kubeconfig"),
        leader_election_id=check_object_name(args.leader_election_id, "--leaderElectionID"),
        leader_election_namespace=check_namespace(lease_namespace, "--leaderElectionNamespace"),
        workers=args.workers,
        resync=args.resync,
        metrics_addr=parse_address(metrics),
        log_format=args.log_format or ("json" if cluster else "text"),
        log_level=args.log_level,
        api_connect_timeout=args.api_connect_timeout,
        api_read_timeout=args.api_read_timeout,
        pull_secret=args.pull_secret,
        dry_run=args.dry_run,
        password_on_argv=bool(args.backup_password),
        in_cluster=cluster,
    )


def check_with_engine(config: ControllerConfig) -> tuple[str, ...]:
    """Let the engine validate the backup target and auth files; return every secret they hold."""
    from imageclone_controller.engine import credentials, factory

    options = factory.BackupOptions.from_mapping(config.backup_options())
    try:
        options.policy  # noqa: B018 - validates --backupRegistry for --naming
    except ValueError as error:
        raise ConfigError(f"--backupRegistry {config.backup_registry!r}: {error}") from None
    try:
        store = options.credentials()
    except ValueError as error:  # CredentialError: names the file and entry, never the secret
        raise ConfigError(f"unusable credentials: {error}") from None
    secrets: list[str] = []
    for registry in sorted(store.registries):
        credential = store.lookup(registry)
        if credential is None:
            continue
        secrets += [secret for secret in (credential.password, credential.identity_token) if secret]
        if credential.has_password:  # the "auth" field of an auth file, an Authorization header
            secrets.append(credentials.basic_token(credential.username, credential.password))
    return tuple(secrets)


def go_style_flags(argv: Sequence[str], long_flags: Iterable[str]) -> list[str]:
    """Accept Go's single-dash spelling of long flags (``-backupRegistry=x``, ``-version``), as the
    seed's Go binary did: each argument that is ``-<long flag>`` or ``-<long flag>=...`` gets its
    second dash. Values and everything after ``--`` are left as they are."""
    known = {flag[2:] for flag in long_flags if flag.startswith("--")}
    translated: list[str] = []
    for position, argument in enumerate(argv):
        if argument == "--":
            return translated + list(argv[position:])
        name = argument[1:].split("=", 1)[0]
        single_dash = argument.startswith("-") and not argument.startswith("--")
        translated.append(f"-{argument}" if single_dash and name in known else argument)
    return translated


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ControllerConfig:
    """Flags to config; exits 2 with a clear message on any invalid flag or value, 1 without the engine."""
    try:
        parser = build_parser()
        long_flags = [flag for action in parser._actions for flag in action.option_strings]
        args = parser.parse_args(go_style_flags(sys.argv[1:] if argv is None else argv, long_flags))
        if args.print_cluster_role:
            print_cluster_role(args.kinds, pull_secrets=args.use_pull_secrets is not False)
        config = config_from_args(args, environ)
        return replace(config, auth_secrets=check_with_engine(config))
    except ConfigError as error:
        parser.error(str(error))
    except ImportError as error:  # engine.EngineNotFound: an installation problem, not a usage one
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(1)


def print_cluster_role(kind_flags: Iterable[str] | None, *, pull_secrets: bool) -> NoReturn:
    """Print the ClusterRole for ``--kinds`` (and ``--usePullSecrets``) and exit 0 (no other flag is needed)."""
    from imageclone_controller.engine import kinds
    from imageclone_controller.rbac import cluster_role_yaml

    names = parse_kinds(kind_flags, kinds.KINDS, kinds.DEFAULT_WATCHED)
    print(cluster_role_yaml((kinds.KINDS[name] for name in names), pull_secrets=pull_secrets), end="")
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv)
    # Children (skopeo) get a filtered environment already; drop the password from ours too.
    os.environ.pop(ENV_PASSWORD, None)

    from imageclone_controller.log import setup_logging

    redact = setup_logging(config.log_format, secrets=config.secrets(), username=config.backup_username,
                           level=logging.getLevelName(config.log_level.upper()))
    log = logging.getLogger("imageclone.cli")
    if config.password_on_argv:
        log.warning("the backup registry password was given on the command line, where every local user "
                    f"can read it (/proc/<pid>/cmdline); use ${ENV_PASSWORD} or --backupAuthFile instead")

    from imageclone_controller.manager import Manager, StartupError

    try:
        return Manager(config, redact=redact).run()
    except StartupError as error:
        log.error("cannot start: %s", error)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
