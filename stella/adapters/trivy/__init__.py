"""trivy."""
