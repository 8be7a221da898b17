"""Worker-process tuning that every heavy DoFn applies in ``setup``: the garbage collector.

CPython's cyclic collector runs after every 700 net container allocations and now and
then walks every live object. An export allocates about a dozen containers per record
(Avro rows, records, pairs, blocks) while whole batches stay alive, so at 100,000
json:raw records the collector ran ~1,300 times and took 15-30% of the export's CPU
(6.1-8.2 CPU s with it, 4.6-5.6 without, same run), and its full passes cost more the
larger the live heap. Almost nothing on this path forms reference cycles (reference
counting frees it), so: freeze what start-up allocated (modules, Beam, the pipeline
graph, never garbage) out of every later pass, and look at young objects every 50,000
allocations instead of 700. Cycles are still collected, just in fewer, larger passes.
Applied once per process, on whichever runner's worker the DoFn lands.
"""

from __future__ import annotations

import functools
import gc

__all__ = ["tune_gc"]

_THRESHOLDS = (50_000, 20, 100)


@functools.cache
def tune_gc() -> None:
    """Freeze start-up objects and raise the collector's thresholds (idempotent)."""
    gc.freeze()
    gc.set_threshold(*_THRESHOLDS)
