"""Worker-process tuning: the collector is tuned once, and start-up objects leave its passes."""

from __future__ import annotations

import gc

from stella.runtime import relax_gc, tune_gc


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    tune_gc()
    tuned = gc.get_threshold()
    assert tuned[0] >= 50_000
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    gc.set_threshold(700, 10, 10)  # a second call must not tune again (idempotent per process)
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == frozen
    gc.set_threshold(*tuned)


def test_relax_gc_raises_the_thresholds_without_freezing() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.set_threshold(700, 10, 10)
    relax_gc()
    assert gc.get_threshold()[0] >= 50_000 and gc.get_freeze_count() == frozen
    gc.set_threshold(*before)
