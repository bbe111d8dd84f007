"""The engine's backup options as controller flags, derived from the modules' own specification.

One specification serves both faces: the option list, types, choices,
defaults, minimums and environment fallbacks come from the collection's
``arguments.BACKUP_ARGUMENTS`` (what the modules accept), the help text from
the ``imageclone.backup.backup`` doc fragment (what ``ansible-doc`` shows).
Only the flag names are the controller's own: the seed's where it had one.
Adding an engine option therefore needs one line here, its flag name, and a
unit test fails until it has one.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

import yaml

from imageclone_controller.engine import arguments, backup_doc

BACKUP_FLAGS: Final[Mapping[str, str]] = {
    "backup_registry": "--backupRegistry",
    "backup_username": "--backupRegistryUser",
    "backup_password": "--backupRegistryPassword",
    "naming": "--naming",
    "backup_authfile": "--backupAuthFile",
    "source_authfile": "--sourceAuthFile",
    "certs_dir": "--certsDir",
    "insecure_registries": "--insecureRegistry",
    "pin": "--pin",
    "parallel": "--parallel",
    "per_registry": "--perRegistry",
    "copy_timeout": "--copyTimeout",
    "retry_times": "--retryTimes",
    "copier": "--copier",
    "use_pull_secrets": "--usePullSecrets",
    "referrers": "--referrers",
}
SEED_OPTIONS: Final = ("backup_registry", "backup_username", "backup_password")
# What the doc fragment cannot know: the controller runs where argv is visible to every local user.
_CONTROLLER_NOTES: Final[Mapping[str, str]] = {
    "backup_password": "On the command line it is visible to every local user (/proc/<pid>/cmdline): "
                       "prefer the environment variable or --backupAuthFile.",
    "backup_authfile": "In a pod, mount a kubernetes.io/dockerconfigjson Secret.",
}
_METAVARS: Final[Mapping[str, str]] = {
    "backup_registry": "REPO", "backup_username": "USER", "backup_password": "PASSWORD",
    "insecure_registries": "HOST", "bool": "BOOL", "int": "N", "path": "PATH", "str": "VALUE", "list": "VALUE",
}
_MARKUP: Final = re.compile(r"\b([CVIE])\(([^)]*)\)")
_OPTION_MARKUP: Final = re.compile(r"\bO\(([a-z_]+)(?:=([^)]*))?\)")


def flag(option: str) -> str:
    return BACKUP_FLAGS[option]


@cache
def _documentation() -> Mapping[str, Any]:
    return yaml.safe_load(backup_doc.ModuleDocFragment.DOCUMENTATION)["options"]


def option_help(option: str) -> str:
    """The doc fragment's description of ``option``, in plain words, with flags for option names."""
    text = " ".join(_documentation()[option]["description"])
    text = _OPTION_MARKUP.sub(lambda m: f"{flag(m[1])}={m[2]}" if m[2] else flag(m[1]), text)
    text = _MARKUP.sub(lambda m: f"${m[2]}" if m[1] == "E" else m[2], text)
    extra = _CONTROLLER_NOTES.get(option)
    return f"{text} {extra}" if extra else text


def add_backup_flags(seed: Any, more: Any, *, boolean: Callable[[str], bool]) -> None:
    """One flag per engine backup option: seed options in ``seed``, the others in ``more``.

    Values land under the option's own name (``args.per_registry``); ``None``
    means not given, so environment fallbacks and defaults apply afterwards.
    """
    for option, spec in arguments.BACKUP_ARGUMENTS.items():
        group = seed if option in SEED_OPTIONS else more
        settings: dict[str, Any] = {"dest": option, "help": _help_with_default(option, spec)}
        kind = spec["type"]
        if kind == "bool":
            settings.update(nargs="?", const=True, type=boolean)
        elif kind == "int":
            settings.update(type=int)
        elif kind == "list":
            settings.update(action="append")
        if "choices" in spec:
            settings["choices"] = spec["choices"]
        else:
            settings["metavar"] = _METAVARS.get(option) or _METAVARS[kind]
        group.add_argument(flag(option), **settings)


def _help_with_default(option: str, spec: Mapping[str, Any]) -> str:
    text = option_help(option).replace("%", "%%")  # argparse formats help with %
    variables = arguments.ENVIRONMENT_FALLBACKS.get(option)
    if variables and f"${variables[0]}" not in text:
        text += f" (default: ${variables[0]})"
    if spec.get("default") not in (None, []):
        text += f" (default {str(spec['default']).lower() if spec['type'] == 'bool' else spec['default']})"
    return text


def backup_options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The engine's backup options from parsed flags: given values, else environment, else defaults."""
    options: dict[str, Any] = {}
    for option, spec in arguments.BACKUP_ARGUMENTS.items():
        value = getattr(args, option)
        if value is None:
            value = next((environ[v] for v in arguments.ENVIRONMENT_FALLBACKS.get(option, ()) if environ.get(v)),
                         None)
        if value is None:
            value = spec.get("default")
        options[option] = value
    return options


def range_problems(options: Mapping[str, Any]) -> list[str]:
    """The modules' minimums, with the controller's flag names."""
    return arguments.range_problems(options, label=flag)
