"""Telemetry shared by every surface: Prometheus metrics and structured JSON logs."""
