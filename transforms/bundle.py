"""``AssembleBundle``: the last step, after every payload file exists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import apache_beam as beam

from stella.bundle.assemble import assemble_bundle
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from transforms.ledger import RecordSummary

__all__ = ["AssembleBundle"]

ExtraFn = Callable[[list[ContentEntry], RecordSummary], Mapping[str, Any]]


class AssembleBundle(beam.PTransform):  # type: ignore[misc]
    """ContentEntries (+ the record summary as a side input) -> the export id.

    Depending on every shard's entry is what orders this step after all payload writes
    (the must-follow idiom), so the manifest can never describe a file not yet written.
    """

    def __init__(
        self, staging: str, request: ExportRequest, summary: beam.PCollection, *, extra: ExtraFn | None = None
    ) -> None:
        super().__init__()
        self._staging = staging
        self._request = request
        self._summary = summary
        self._extra = extra

    def expand(self, entries: beam.PCollection) -> beam.PCollection:
        staging, request, extra = self._staging, self._request, self._extra

        def assemble(contents: list[ContentEntry], summary: RecordSummary) -> str:
            more = extra(contents, summary) if extra else None
            manifest = assemble_bundle(
                Path(staging), request, contents, summary.counts, summary.high_water, extra=more
            )
            return str(manifest["exportId"])

        return (
            entries
            | "CollectContents" >> beam.combiners.ToList()
            | "WriteManifest"
            >> beam.Map(assemble, summary=beam.pvalue.AsSingleton(self._summary)).with_output_types(str)
        )
