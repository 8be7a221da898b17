"""The one pipeline shape of the Trivy profiles (``trivy_db.py``, ``trivy_java_db.py``).

Both profiles differ only in which records they keep, how a record becomes sortable
items, how the sorted items are merged into a database, and what the manifest says
about it::

    ReadLedger -> SelectRecords -> KeepRecords -> AdaptRecords -> WriteTrivyArtifact -> AssembleBundle
                                             \\-> SummarizeRecords (UpdatedAt, counts: side input)

Every step works on the segments' Avro rows (``rows=True``), as json:raw does: the
adapters read the few fields they need from the row, so no LedgerRecord is built.

WriteTrivyArtifact merges the sorted items, then writes metadata, the tarball and the
OCI layout; it runs alone after every other step, so it gets the run's worker count:
trivy:db's database is merged in key ranges on that many helper processes while the
step writes it (:mod:`stella.rangemerge`), and the tarball is compressed on that many
threads (the bytes depend on neither).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import apache_beam as beam

from runners.options import worker_count
from stella.adapters.trivy.payload import TrivyLayout, parse_trivy_options
from stella.bundle.request import ExportRequest
from stella.model import LedgerRow
from stella.profiles import ProfileOption
from transforms.bundle import AssembleBundle
from transforms.ledger import KeepRecords, ReadLedger, SelectRecords, SummarizeRecords
from transforms.shards import AdaptRows, RowsAdapter
from transforms.trivy import ProfileFields, WriteTrivyArtifact

__all__ = ["ProfileFields", "TrivyPipeline", "next_update_option"]


@dataclass(frozen=True)
class TrivyPipeline:
    """What one Trivy profile plugs into the shared shape."""

    keep: Callable[[LedgerRow], bool]  # of a ledger row: every step reads rows, no record is built
    keep_label: str
    adapter: RowsAdapter
    layout: TrivyLayout
    merge: Any  # the merge callable WriteTrivyArtifact runs (write_db_outputs / write_java_outputs)
    write_label: str
    fields: ProfileFields

    def build(self, pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
        """Compile this profile's request into ``pipeline``, writing into ``staging`` (local or ``gs://``)."""
        options = parse_trivy_options(request.options)  # a bad option fails before anything runs
        kept = (
            pipeline
            | "ReadLedger"
            >> ReadLedger([s.path for s in request.segments], trace=request.trace_context, rows=True)
            | "SelectRecords" >> SelectRecords(request.selectors, rows=True)
            | self.keep_label >> KeepRecords(self.keep, rows=True)
        )
        summary = kept | "SummarizeRecords" >> SummarizeRecords(rows=True)
        written = (
            kept
            | "AdaptRecords" >> AdaptRows(self.adapter, request.trace_context)
            | self.write_label
            >> WriteTrivyArtifact(
                staging=staging,
                request=request,
                summary=summary,
                layout=self.layout,
                options=options,
                merge=self.merge,
                fields=self.fields,
                threads=worker_count(pipeline.options),
            )
        )
        return written["contents"] | "AssembleBundle" >> AssembleBundle(
            staging, request, summary, fields=written["fields"]
        )


def next_update_option(layout: TrivyLayout) -> ProfileOption:
    """The ``next-update`` option, with the default interval of ``layout``'s upstream DB."""
    return ProfileOption(
        key="next-update",
        type="duration (36h, 7d, 1d12h) or RFC 3339 time",
        default=f"UpdatedAt + {_duration_text(layout.default_validity)}",
        help="metadata NextUpdate: until when an offline Trivy keeps the DB",
    )


def _duration_text(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    hours, rest = divmod(seconds, 3600)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{rest}s" if rest else ""]
    return "".join(parts) or "0s"
