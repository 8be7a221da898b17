"""Real components the tests start or drive: a registry on 127.0.0.1, the Trivy binary."""
