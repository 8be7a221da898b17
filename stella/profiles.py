"""What an export profile is: its manifest identity, status and options.

The catalogue of profiles lives in :mod:`pipelines.registry` (one entry per profile,
beside its builder); this module only holds the types every layer shares, so a
request, a manifest or a verifier can name a profile without importing pipelines.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stella.errors import UsageError

__all__ = ["Profile", "ProfileOption", "ProfileStatus", "parse_profile_options"]


class ProfileStatus(enum.StrEnum):
    AVAILABLE = "available"
    PLANNED = "planned"


@dataclass(frozen=True)
class ProfileOption:
    """One ``--option key=value`` a profile accepts.

    ``type`` and ``default`` are what ``stella export profiles`` and the docs show; the
    profile's own options parser validates values against them when the pipeline is built.
    """

    key: str  # as typed on the command line: lower-case, hyphenated
    type: str
    default: str
    help: str

    @property
    def field(self) -> str:
        """The key as the request and the manifest record it (camelCase)."""
        return re.sub(r"-([a-z0-9])", lambda m: m.group(1).upper(), self.key)

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "type": self.type, "default": self.default, "help": self.help}


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    variant: str
    revision: str
    status: ProfileStatus
    contents: str
    consumer: str
    options: tuple[ProfileOption, ...] = ()

    @property
    def option_keys(self) -> tuple[str, ...]:
        return tuple(option.key for option in self.options)

    def to_json(self) -> dict[str, str]:
        """The manifest's ``profile`` object (StellaOps run-manifest field names)."""
        return {"kind": self.kind, "variant": self.variant, "name": self.name, "revision": self.revision}


_OPTION_KEY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def parse_profile_options(pairs: Sequence[str], profile: Profile) -> dict[str, str]:
    """``--option key=value`` pairs as the request's ``options`` (keys camelCased, as in the manifest).

    Every profile declares the keys it accepts, so a typo fails here, before the ledger
    is read, whatever the profile; the profile's pipeline still validates the values.

    Raises:
        UsageError: not ``key=value``, a malformed or repeated key, or a key the profile
            does not accept (the message lists the ones it does).
    """
    declared = {option.key: option for option in profile.options}
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _OPTION_KEY.fullmatch(key):
            raise UsageError(
                f"--option {pair!r}: expected key=value with a lower-case key (e.g. next-update=48h)",
                details={"option": pair},
            )
        option = declared.get(key)
        if option is None:
            known = ", ".join(declared) or "none"
            raise UsageError(
                f"--option {key}: profile {profile.name} has no such option; its options: {known}",
                details={"option": key, "profile": profile.name, "options": list(declared)},
            )
        if option.field in options:
            raise UsageError(f"--option {key} is given twice", details={"option": key})
        options[option.field] = value
    return options
