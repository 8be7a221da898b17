"""Runner selection (offline default, pass-through for Dask, Flink and Dataflow) and warm workers.

Import the modules themselves (``runners.options``...): this package imports nothing, so
that ``runners.warm`` can start worker processes before anything imports Beam.
"""
