"""Export profiles compiled into Beam pipelines: one module per profile, the registry that lists
them, and the driver that runs, finishes and publishes an export.
"""
