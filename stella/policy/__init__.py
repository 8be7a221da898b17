"""Pinned policies: the language, canonical snapshots per tenant, and their pure evaluation."""
