"""Attestation formats, written and read from their specifications: DSSE envelopes, in-toto
statements with SLSA provenance, and cosign-style blob signatures.
"""
