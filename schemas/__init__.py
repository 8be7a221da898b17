"""Schemas shipped with the package (Avro ledger segments, JSON Schemas of bundle files)."""
