"""Thin composite PTransforms (verb names) and their DoFns, each wrapping pure functions from
``stella``; batches of records are the elements.
"""
