"""Process tuning for exports: the garbage collector.

CPython's cyclic collector runs after every 700 net container allocations and now and
then walks every live object. An export allocates about a dozen containers per record
(Avro rows, records, pairs, blocks) while whole batches stay alive, so at 100,000
json:raw records the collector ran ~1,300 times and took 15-30% of the export's CPU
(6.1-8.2 CPU s with it, 4.6-5.6 without, same run), and its full passes cost more the
larger the live heap. Almost nothing on this path forms reference cycles (reference
counting frees it), so: freeze what start-up allocated (modules, Beam, the pipeline
graph, never garbage) out of every later pass, and look at young objects every 500,000
allocations instead of 700. Cycles are still collected, just in fewer, larger passes.
The count is of allocations net of frees, and a batch's rows are freed as a whole, so
at 500,000 a json:raw export hardly ever reaches it: at 50,000 the young passes still
walked every live batch, 43 passes and 0.27 CPU s of a 200k-record export (1.3 us per
record, measured with gc.callbacks), against 0.001 s now.
Applied once per process, on whichever runner's worker the DoFn lands (``tune_gc``), and
by the driver before it runs the pipeline: a multi-process run's driver runs no DoFn, and
unfrozen, its interpreter's last collection at exit walked every start-up object.

Start-up pays too: Beam's imports and the pipeline graph allocate millions of objects
before any DoFn runs, and the default thresholds walked them over and over (~0.3 CPU s
of an export's ~2 s start-up here). The CLI raises the thresholds first thing
(``relax_gc``); the freeze still comes with the first DoFn, so it covers them.
"""

from __future__ import annotations

import functools
import gc

__all__ = ["relax_gc", "tune_gc"]

_THRESHOLDS = (500_000, 20, 100)


def relax_gc() -> None:
    """Raise the collector's thresholds (no freeze): for a process about to build and run an export."""
    gc.set_threshold(*_THRESHOLDS)


@functools.cache
def tune_gc() -> None:
    """Freeze start-up objects and raise the collector's thresholds (idempotent)."""
    gc.freeze()
    relax_gc()
