"""``AssembleBundle``: the last step, after every payload file exists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apache_beam as beam

from stella.bundle.assemble import assemble_bundle
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from transforms.ledger import RecordSummary

__all__ = ["AssembleBundle"]


class AssembleBundle(beam.PTransform):  # type: ignore[misc]
    """ContentEntries (+ the record summary, + optional manifest fields, as side inputs) -> the export id.

    Depending on every shard's entry is what orders this step after all payload writes
    (the must-follow idiom), so the manifest can never describe a file not yet written.
    ``fields`` is a singleton PCollection of profile-specific manifest fields, computed
    by the step that wrote the files they describe: this step reads nothing back, so it
    runs on any worker whatever storage ``staging`` is on.
    """

    def __init__(
        self,
        staging: str,
        request: ExportRequest,
        summary: beam.PCollection,
        *,
        fields: beam.PCollection | None = None,
    ) -> None:
        super().__init__()
        self._staging = staging
        self._request = request
        self._summary = summary
        self._fields = fields

    def expand(self, entries: beam.PCollection) -> beam.PCollection:
        staging, request = self._staging, self._request

        def assemble(
            contents: list[ContentEntry], summary: RecordSummary, extra: Mapping[str, Any] | None = None
        ) -> str:
            manifest = assemble_bundle(
                staging, request, contents, summary.counts, summary.high_water, extra=extra
            )
            return str(manifest["exportId"])

        side: dict[str, Any] = {"summary": beam.pvalue.AsSingleton(self._summary)}
        if self._fields is not None:
            side["extra"] = beam.pvalue.AsSingleton(self._fields)
        return (
            entries
            | "CollectContents" >> beam.combiners.ToList()
            | "WriteManifest" >> beam.Map(assemble, **side).with_output_types(str)
        )
