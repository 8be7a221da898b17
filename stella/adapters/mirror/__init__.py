"""mirror:full and mirror:delta: record identity, Parquet indexes and the delta, as pure functions.

Beam (``transforms/mirror.py``) and the importer (``stella/mirror``) call the same
functions, which is what makes a mirror built from a full bundle and one built from a
chain of deltas byte-identical.
"""
