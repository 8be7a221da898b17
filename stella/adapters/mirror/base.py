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

Where the base is read: only the driver opens the base bundles, which live on its disk
(a folder or a ``.tar.zst``). :func:`stage_chain` checks the members workers need
against the digests their signed manifests give, then copies them, one stream at a
time, under the run's staging location through Beam's FileSystems; workers open only
those copies, by URL (:class:`BaseLink`), so a delta runs wherever the staging is
shared (``gs://``), whatever the workers' hosts, cwd or temp folders.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stella import storage
from stella.adapters.mirror.delta import REMOVE, parse_change
from stella.errors import BaseMissingError, BundleIntegrityError
from stella.guards.ids import check_id
from stella.guards.streams import iter_lines, open_decompressed
from stella.model import LedgerRow, latest_high_water, record_key
from stella.selectors import Selectors

__all__ = ["BaseBundle", "BaseLink", "StagedFile", "base_digests", "reselect", "stage_chain"]


@dataclass(frozen=True)
class BaseBundle:
    """One bundle of a base's chain as the driver found it: a full or a delta.

    ``path`` is on the driver's disk (a bundle folder or ``.tar.zst``) and never leaves
    the driver; ``files`` maps each member workers need (the full's record index, a
    delta's change list) to the digest its signed manifest gives.
    """

    path: Path
    export_id: str
    files: Mapping[str, str]
    full: bool


@dataclass(frozen=True)
class StagedFile:
    """A base member copied under the run's staging location (:func:`stage_chain`)."""

    member: str
    url: str
    digest: str


@dataclass(frozen=True)
class BaseLink:
    """One bundle of a base's chain as workers see it: its needed members, staged, by URL."""

    export_id: str
    files: tuple[StagedFile, ...]
    full: bool


def reselect(
    rows: Iterable[LedgerRow], base: Selectors, current: Selectors
) -> tuple[list[LedgerRow], list[bytes], str | None]:
    """Rows of a segment the base read: (now selected and not before, keys no longer selected,
    high-water mark of everything selected now).

    On rows as the segment stores them (:meth:`Selectors.matches_row`): the records that
    stay selected, nearly all of them, cost two matches and their times, never a
    :class:`~stella.model.LedgerRecord`, a line or a digest.
    """
    entering: list[LedgerRow] = []
    leaving: list[bytes] = []
    times: list[tuple[str | None, str]] = []
    now_matches = current.matches_row
    before_matches = None if base.is_empty else base.matches_row
    for row in rows:
        before = before_matches is None or before_matches(row)
        if now_matches(row):
            times.append((row["modified"], row["ingested_at"]))
            if not before:
                entering.append(row)
        elif before:
            leaving.append(record_key(row["kind"], row["upstream_id"], row["modified"], row["digest"]))
    return entering, leaving, latest_high_water(times)


_CHUNK: Final = 1 << 20


def _copy_hashing(source: IO[bytes], sink: IO[bytes] | None) -> str:
    """Stream ``source`` (into ``sink``, if any) in bounded chunks; its ``sha256:`` digest."""
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return "sha256:" + digest.hexdigest()


def _tampered(export_id: str, member: str, what: str = "") -> BundleIntegrityError:
    return BundleIntegrityError(
        f"base {export_id}: {what}{member} does not match its manifest digest",
        details={"base": export_id, "file": member},
    )


def _each_member(bundle: BaseBundle, sink_for: Mapping[str, str] | None = None) -> None:
    """Hash (and, given ``sink_for`` member -> URL, copy) each needed member of ``bundle``.

    One member is open at a time and read in chunks, so the driver's memory does not
    grow with the base. Raises as :func:`stage_chain`.
    """
    from stella.bundle.verify import iter_members

    seen = set()
    for relative, stream in iter_members(bundle.path):
        expected = bundle.files.get(relative)
        if expected is None:
            continue
        if sink_for is None:
            found = _copy_hashing(stream, None)
        else:
            with storage.open_write(sink_for[relative]) as sink:
                found = _copy_hashing(stream, sink)
        if found != expected:
            raise _tampered(bundle.export_id, relative)
        seen.add(relative)
    missing = sorted(set(bundle.files) - seen)
    if missing:
        raise BaseMissingError(
            f"base {bundle.export_id} has no {missing[0]}; export mirror:full instead",
            details={"base": bundle.export_id, "file": missing[0]},
        )


def stage_chain(chain: Sequence[BaseBundle], root: str) -> tuple[BaseLink, ...]:
    """Copy the members workers need from each bundle of ``chain`` under ``root``.

    ``root`` is a folder of the run's staging location (local or ``gs://``), removed
    with it. Every member is checked against its manifest digest *before* anything is
    written, then hashed again as it is copied (a base changed meanwhile fails too).
    Copies are named ``<root>/<position>-<exportId>/<member path>``.

    Raises:
        BundleIntegrityError: a member's bytes differ from its manifest digest, or the
            bundle is unreadable (a corrupt archive, a symlink).
        BaseMissingError: a bundle lacks a member its manifest names.
    """
    for bundle in chain:
        _each_member(bundle)
    links = []
    for position, bundle in enumerate(chain):
        folder = f"{position:03d}-{check_id(bundle.export_id, 'base exportId', error=BundleIntegrityError)}"
        urls = {member: storage.join(root, folder, *member.split("/")) for member in sorted(bundle.files)}
        _each_member(bundle, urls)
        staged = tuple(StagedFile(m, urls[m], bundle.files[m]) for m in sorted(bundle.files))
        links.append(BaseLink(bundle.export_id, staged, bundle.full))
    return tuple(links)


def _members(link: BaseLink) -> Iterator[tuple[str, bytes]]:
    """The link's staged files in member order, each checked again against its manifest digest."""
    for staged in link.files:
        data = storage.read_bytes(staged.url)
        if "sha256:" + hashlib.sha256(data).hexdigest() != staged.digest:
            raise _tampered(link.export_id, staged.member, "the staged copy of ")
        yield staged.member, data


def _tables(link: BaseLink, columns: Sequence[str]) -> Iterator[pa.Table]:
    for _member, data in _members(link):
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
