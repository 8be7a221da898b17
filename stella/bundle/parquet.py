"""The one Parquet writer configuration: files whose bytes are a function of their rows.

Every Parquet file in a bundle (the mirror's indexes, json:policy's findings) is hashed
into a signed manifest and must come out byte-identical across runs, workers and
runners, so each setting that changes bytes is fixed here: format version 2.6, zstd
level 3, dictionary encoding and statistics on, 1 MiB data pages, 64 Ki-row groups, no
page index and no page checksums. No footer holds a time; ``created_by`` names the
pyarrow version, which ``pyproject.toml`` pins.

Two settings differ between the two outputs and are stated by each caller, because
either one changes the bytes of files that are already signed and pinned by golden
digests (changing one is a format change of that output, not a clean-up):

* ``data_page_version``: the findings are written with data page v2 ("2.0"), the
  mirror indexes with v1 ("1.0", pyarrow's default);
* ``store_schema``: the findings embed the Arrow schema (their list and boolean columns
  read back in pyarrow and pandas with exactly the declared types); the mirror indexes
  do not (flat string and binary columns that DuckDB and pandas read from Parquet's own
  types, and a footer without an Arrow IPC blob).
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from stella.storage import HashingWriter

__all__ = ["PARQUET_CONTENT_TYPE", "ROW_GROUP_ROWS", "parquet_writer"]

PARQUET_CONTENT_TYPE: Final = "application/vnd.apache.parquet"
ROW_GROUP_ROWS: Final = 65_536


def parquet_writer(
    sink: HashingWriter, schema: pa.Schema, *, data_page_version: str, store_schema: bool
) -> pq.ParquetWriter:
    """A writer into ``sink`` with the fixed settings; write row groups of :data:`ROW_GROUP_ROWS`."""
    return pq.ParquetWriter(
        pa.PythonFile(sink, mode="w"),
        schema,
        version="2.6",
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        data_page_size=1 << 20,
        data_page_version=data_page_version,
        store_schema=store_schema,
        write_page_index=False,
        write_page_checksum=False,
    )
