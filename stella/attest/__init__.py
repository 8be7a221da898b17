"""attest."""
