"""Schemas the package reads at run time: ``ledger-record.avsc`` (the Avro schema of ledger
segments, :mod:`stella.ledger.store`) and ``policy.schema.json`` (the JSON Schema of policy
documents, :mod:`stella.policy.language`).
"""
