"""The targets port: where a finished bundle goes (an OCI registry today), behind the egress
allowlist, and the one way to push a bundle through a target.
"""
