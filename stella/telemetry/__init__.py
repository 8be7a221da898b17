"""Telemetry shared by every surface: Prometheus metrics, structured JSON logs and OpenTelemetry traces."""
