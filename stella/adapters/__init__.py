"""The adapters port: pure functions turning ledger records into the sortable items a profile
writes (json:raw shards, the Trivy databases).
"""
