"""Dataflow Flex Templates: one template spec per profile, and the launcher they start.

Sites that schedule with Cloud Scheduler launch a Flex Template instead of our
service. The spec (``python -m runners.flex_template PROFILE IMAGE``) is the file
``gcloud dataflow flex-template build`` would write: the container image, the SDK
language, and metadata naming every parameter a launch may pass -- the run's own
(tenant, ledger, staging, output, selectors, targets) and the profile's ``--option``
keys, each with a validation regex. In the container, ``FLEX_TEMPLATE_PYTHON_PY_FILE``
points at this module: :func:`launcher_argv` turns the launch parameters back into the
``stella export run`` command line, so a templated run checks and does exactly what
the CLI does (egress allowlist, runner options, atomic publish).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.registry import REGISTRY, get_profile
from stella.errors import UsageError
from stella.profiles import Profile

__all__ = ["PARAMETER_NAME", "flex_template_spec", "launcher_argv", "main"]

PARAMETER_NAME = re.compile(r"^[a-zA-Z][-_a-zA-Z0-9]*$")
_LIST_SEPARATOR = ";"  # Dataflow passes each parameter as one string


def _option_parameter(key: str) -> str:
    return "option_" + key.replace("-", "_")


def _parameters(profile: Profile) -> list[dict[str, Any]]:
    common: list[dict[str, Any]] = [
        {
            "name": "profile",
            "label": "Profile",
            "helpText": f"always {profile.name}: this template's profile",
            "regexes": [f"^{re.escape(profile.name)}$"],
        },
        {
            "name": "tenant",
            "label": "Tenant",
            "helpText": "the tenant whose ledger is exported (a lowercase slug)",
            "regexes": ["^[a-z0-9][a-z0-9-]{1,62}$"],
        },
        {
            "name": "ledger",
            "label": "Ledger location",
            "helpText": "gs://bucket/prefix of the evidence ledger",
            "regexes": ["^gs://[a-z0-9][-_.a-z0-9]*[a-z0-9](/.*)?$"],
        },
        {
            "name": "staging",
            "label": "Staging location",
            "helpText": "gs:// prefix every worker writes the run's files under",
            "regexes": ["^gs://.+$"],
        },
        {
            "name": "out",
            "label": "Output folder",
            "helpText": "local folder of the launcher the bundle is published in before its targets",
            "isOptional": True,
        },
        {
            "name": "selectors",
            "label": "Selectors",
            "helpText": f"KEY=VALUE[,VALUE] selectors separated by '{_LIST_SEPARATOR}' (docs/selectors.md)",
            "isOptional": True,
        },
        {
            "name": "targets",
            "label": "Targets",
            "helpText": f"gs:// or oci:// target URLs separated by '{_LIST_SEPARATOR}' (docs/distribution.md)",
            "isOptional": True,
            "regexes": ["^((gs|oci|file)://[^;]+)(;(gs|oci|file)://[^;]+)*$"],
        },
        {
            "name": "allow_hosts",
            "label": "Egress allowlist",
            "helpText": f"hosts the targets may reach, separated by '{_LIST_SEPARATOR}'",
            "isOptional": True,
        },
    ]
    options = [
        {
            "name": _option_parameter(option.key),
            "label": f"Option {option.key}",
            "helpText": f"{option.help} ({option.type}; default {option.default})",
            "isOptional": True,
        }
        for option in profile.options
    ]
    return common + options


def flex_template_spec(profile_name: str, image: str) -> dict[str, Any]:
    """The Flex Template spec of one available profile.

    Raises:
        UsageError: unknown profile or an empty image.
        ProfileUnavailableError: the profile is planned, not built.
    """
    profile = get_profile(profile_name)
    if not image:
        raise UsageError("a Flex Template needs its container image (gcr.io/…/stella-export:TAG)")
    return {
        "image": image,
        "sdkInfo": {"language": "PYTHON"},
        "metadata": {
            "name": f"Stella Export Center {profile.name}",
            "description": f"{profile.contents} (consumer: {profile.consumer})",
            "parameters": _parameters(profile),
        },
        "defaultEnvironment": {},
    }


def launcher_argv(
    profile_name: str, parameters: Mapping[str, str], beam_args: Sequence[str] = ()
) -> list[str]:
    """The ``stella export run`` arguments a launch with ``parameters`` stands for.

    Raises:
        UsageError: a missing required parameter or one the template does not declare.
    """
    profile = get_profile(profile_name)
    declared = {p["name"]: p for p in _parameters(profile)}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise UsageError(f"unknown template parameter {unknown[0]!r}", details={"parameter": unknown[0]})
    missing = [name for name, p in declared.items() if not p.get("isOptional") and not parameters.get(name)]
    if missing:
        raise UsageError(f"missing template parameter {missing[0]!r}", details={"parameter": missing[0]})
    for name, value in parameters.items():
        for pattern in declared[name].get("regexes", []):
            if not re.fullmatch(pattern, value):
                raise UsageError(f"template parameter {name}={value!r} does not match {pattern}")
    argv = ["export", "run", "--profile", parameters["profile"], "--tenant", parameters["tenant"]]
    argv += ["--ledger", parameters["ledger"], "--staging", parameters["staging"]]
    argv += ["--out", parameters.get("out") or "/tmp/stella-out"]

    def listed(name: str) -> list[str]:
        return [item for item in parameters.get(name, "").split(_LIST_SEPARATOR) if item]

    argv += [arg for selector in listed("selectors") for arg in ("--selector", selector)]
    argv += [arg for target in listed("targets") for arg in ("--target", target)]
    argv += [arg for host in listed("allow_hosts") for arg in ("--allow-host", host)]
    for option in profile.options:
        given = parameters.get(_option_parameter(option.key))
        if given:
            argv += ["--option", f"{option.key}={given}"]
    return [*argv, "--json", *beam_args]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runners.flex_template PROFILE IMAGE`` prints a spec; in the container, launches.

    Dataflow starts the launcher as ``python FILE --profile P --param=value … [beam options]``.
    """
    from stella.cli import main as stella_main

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] in REGISTRY and not args[1].startswith("--"):
        print(json.dumps(flex_template_spec(args[0], args[1]), indent=2, sort_keys=True))
        return 0
    given = dict(arg.removeprefix("--").partition("=")[::2] for arg in args if arg.startswith("--"))
    profile = get_profile(given.get("profile", ""))
    names = {p["name"] for p in _parameters(profile)}
    parameters = {name: value for name, value in given.items() if name in names}
    beam = [arg for arg in args if arg.removeprefix("--").partition("=")[0] not in names]
    return stella_main(launcher_argv(profile.name, parameters, beam))


if __name__ == "__main__":
    sys.exit(main())
