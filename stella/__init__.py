"""Export Center: signed, verifiable, byte-reproducible vulnerability-evidence bundles."""

__all__ = ["TOOL_NAME", "__version__"]

__version__ = "0.1.0"
TOOL_NAME = "stella-export-center"
