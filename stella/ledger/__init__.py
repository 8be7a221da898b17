"""The evidence ledger: append-only Avro segments per tenant, ingestion with quarantine, and
synthetic ledgers for demos and benchmarks.
"""
