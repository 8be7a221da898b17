"""What a delta needs to know about its base, read from the base bundles, never from the ledger.

A delta compares the records that may have changed with the base's (key, content
digest) pairs. Those pairs are already written, digest-bound by a signed manifest: a
mirror:full's record index (Parquet), then each later delta's change list. So the base
side costs a vectorised Parquet scan for the keys wanted, not a re-read and re-hash of
every base record; and a base that is itself a delta is its chain back to a full.

Which records *may* have changed comes from the ledger's structure (the ledger is
append-only and a mirror manifest names the segments it read): every selected record of
a segment the base did not read, and, only if the selection changed, the records of the
base's segments whose selection changed (:func:`reselect`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stella.adapters.mirror.delta import REMOVE, parse_change
from stella.errors import BaseMissingError, BundleIntegrityError
from stella.guards.streams import iter_lines, open_decompressed
from stella.model import LedgerRecord
from stella.selectors import Selectors
from stella.timefmt import later

__all__ = ["BaseLink", "base_digests", "reselect"]


@dataclass(frozen=True)
class BaseLink:
    """One bundle of a base's chain: a full (its record index files) or a delta (its change list).

    ``files`` maps each member path to the digest its manifest signs.
    """

    bundle: Path
    export_id: str
    files: Mapping[str, str]
    full: bool


def reselect(
    records: Iterable[LedgerRecord], base: Selectors, current: Selectors
) -> tuple[list[LedgerRecord], list[bytes], str | None]:
    """Records of a segment the base read: (now selected and not before, keys no longer selected,
    high-water mark of everything selected now)."""
    entering: list[LedgerRecord] = []
    leaving: list[bytes] = []
    high: str | None = None
    for record in records:
        now, before = current.matches(record), base.matches(record)
        if now:
            high = later(high, record.high_water)
            if not before:
                entering.append(record)
        elif before:
            leaving.append(record.sort_key)
    return entering, leaving, high


def _members(link: BaseLink) -> Iterator[tuple[str, bytes]]:
    """The link's files, each checked against the digest its manifest signs."""
    from stella.bundle.verify import iter_members

    seen = set()
    for relative, stream in iter_members(link.bundle):
        if relative not in link.files:
            continue
        data = stream.read()
        if "sha256:" + hashlib.sha256(data).hexdigest() != link.files[relative]:
            raise BundleIntegrityError(
                f"base {link.export_id}: {relative} does not match its manifest digest",
                details={"base": link.export_id, "file": relative},
            )
        seen.add(relative)
        yield relative, data
    missing = sorted(set(link.files) - seen)
    if missing:
        raise BaseMissingError(
            f"base {link.export_id} has no {missing[0]}; export mirror:full instead",
            details={"base": link.export_id, "file": missing[0]},
        )


def _tables(link: BaseLink, columns: Sequence[str]) -> Iterator[pa.Table]:
    for _relative, data in sorted(_members(link)):
        yield pq.read_table(io.BytesIO(data), columns=list(columns))


def base_digests(chain: Sequence[BaseLink], wanted: Iterable[bytes]) -> dict[bytes, str]:
    """key -> content digest in the base, for the ``wanted`` keys it holds.

    The full's record index is filtered in Arrow (``is_in``), then each delta of the
    chain is applied in order, so the answer is the base's state for those keys.
    """
    keys = pa.array(sorted(set(wanted)), pa.binary())
    found: dict[bytes, str] = {}
    if not len(keys):
        return found
    head, *deltas = chain
    for table in _tables(head, ("key", "lineDigest")):
        hit = table.filter(pc.is_in(table["key"], value_set=keys))
        found.update(zip(hit["key"].to_pylist(), hit["lineDigest"].to_pylist(), strict=True))
    wanted_set = set(keys.to_pylist())
    for link in deltas:
        for relative, data in _members(link):
            with open_decompressed(
                io.BytesIO(data), "zstd", what=relative, error=BundleIntegrityError
            ) as reader:
                for line in iter_lines(reader):
                    change = parse_change(line.data, where=f"{link.export_id}/{relative}")
                    if change.key not in wanted_set:
                        continue
                    if change.op == REMOVE:
                        found.pop(change.key, None)
                    else:
                        assert change.digest is not None
                        found[change.key] = change.digest
    return found
