"""The air-gapped side of mirror:full / mirror:delta: ``stella mirror import | status``."""
