"""The Trivy profiles' adapters: OSV to Trivy DB entries and SBOM jars to Java DB rows, the bbolt
and SQLite writers, and the tarball and OCI layout Trivy downloads.
"""
