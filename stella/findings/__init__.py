"""Findings: SBOM components x OSV advisories x VEX statements, as pure functions Beam runs per partition."""
