"""The findings' intermediate values as bytes, for the sorted runs the joins spill to.

Plain :mod:`pickle`, with one compact reducer per value type: a ``slots=True``
dataclass otherwise pickles through ``__getstate__``/``__setstate__``, which call
``dataclasses.fields()`` for every object -- measured at a third of a json:policy
export's CPU time. A reducer here is (class, field values), rebuilt by the class's own
constructor, so a decoded value equals the encoded one. Run files are written and read
by the same export under its staging root, never taken from outside.
"""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from stella.adapters.trivy.ecosystems import OsRelease
from stella.adapters.trivy.versions import Interval
from stella.findings.advisories import Affected, Severity
from stella.findings.components import Component
from stella.findings.match import Match
from stella.findings.purls import PackageRef
from stella.findings.vex import Product, Statement

__all__ = ["decode", "encode"]

_TYPES: tuple[type, ...] = (
    Affected,
    Component,
    Interval,
    Match,
    OsRelease,
    PackageRef,
    Product,
    Severity,
    Statement,
)


def _reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    fields = dataclasses.fields(cls)
    if len(fields) < 2 or not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__}: a compact reducer needs two or more fields, all in __init__")
    names = [f.name for f in fields]
    values = attrgetter(*names)

    def reduce(value: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, values(value)

    return reduce


for _cls in _TYPES:
    copyreg.pickle(_cls, _reducer(_cls))


def encode(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data)
