"""Dataflow Flex Template specs per profile, validated offline, and the launcher's command line."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from pipelines.registry import REGISTRY
from runners.flex_template import flex_template_spec, launcher_argv
from stella.cli import build_parser
from stella.errors import UsageError
from stella.profiles import ProfileStatus

# The template-file format `gcloud dataflow flex-template build` writes (Dataflow's documented
# metadata: parameter names are identifiers, regexes are lists of patterns).
SPEC_SCHEMA = {
    "type": "object",
    "required": ["image", "sdkInfo", "metadata"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "sdkInfo": {
            "type": "object",
            "required": ["language"],
            "properties": {"language": {"enum": ["PYTHON"]}},
        },
        "metadata": {
            "type": "object",
            "required": ["name", "parameters"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "parameters": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "label", "helpText"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-zA-Z][-_a-zA-Z0-9]*$"},
                            "label": {"type": "string", "minLength": 1},
                            "helpText": {"type": "string", "minLength": 1},
                            "isOptional": {"type": "boolean"},
                            "regexes": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "defaultEnvironment": {"type": "object"},
    },
}
AVAILABLE = [name for name, entry in REGISTRY.items() if entry.profile.status is ProfileStatus.AVAILABLE]


@pytest.mark.parametrize("name", AVAILABLE)
def test_each_profile_has_a_valid_template_spec(name: str) -> None:
    spec = json.loads(json.dumps(flex_template_spec(name, "gcr.io/acme/stella-export:1")))
    jsonschema.validate(spec, SPEC_SCHEMA)
    parameters = spec["metadata"]["parameters"]
    names = [p["name"] for p in parameters]
    assert len(names) == len(set(names))
    for parameter in parameters:
        for pattern in parameter.get("regexes", []):
            re.compile(pattern)
    options = {p["name"] for p in parameters if p["name"].startswith("option_")}
    assert options == {"option_" + o.key.replace("-", "_") for o in REGISTRY[name].profile.options}


def test_the_launcher_runs_what_the_cli_would() -> None:
    argv = launcher_argv(
        "json:raw",
        {
            "profile": "json:raw",
            "tenant": "acme",
            "ledger": "gs://evidence/ledger",
            "staging": "gs://evidence/staging",
            "selectors": "kind=advisory;ecosystem=PyPI",
            "targets": "gs://bundles/acme;oci://registry.local/stella/json-raw:acme",
            "allow_hosts": "registry.local",
        },
        ["--runner=DataflowRunner", "--project=p", "--region=europe-west1"],
    )
    args, beam = build_parser().parse_known_args(argv)
    assert (args.tenant, args.profile, args.ledger, args.staging) == (
        "acme", "json:raw", "gs://evidence/ledger", "gs://evidence/staging",
    )  # fmt: skip
    assert args.selector == ["kind=advisory", "ecosystem=PyPI"]
    assert args.target == ["gs://bundles/acme", "oci://registry.local/stella/json-raw:acme"]
    assert args.allow_host == ["registry.local"] and beam[0] == "--runner=DataflowRunner"


@pytest.mark.parametrize(
    "parameters",
    [
        {"profile": "json:raw", "tenant": "acme", "ledger": "gs://l/x"},  # no staging
        {"profile": "json:raw", "tenant": "Acme!", "ledger": "gs://l/x", "staging": "gs://s"},
        {"profile": "trivy:db", "tenant": "acme", "ledger": "gs://l/x", "staging": "gs://s"},
        {"profile": "json:raw", "tenant": "acme", "ledger": "gs://l/x", "staging": "gs://s", "bogus": "1"},
    ],
)
def test_bad_launch_parameters_are_usage_errors(parameters: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        launcher_argv("json:raw", parameters)
