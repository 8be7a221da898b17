"""The Export Center as a service: HTTP API, run store, workers and Console.

A surface beside :mod:`stella.cli`: it parses, authorizes, calls the same library
functions the CLI calls (workers call :func:`pipelines.export.run_export`) and renders.
No export logic lives here.
"""
