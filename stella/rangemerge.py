"""Sorted groups for a one-file artifact, and their reduction in key ranges by helper processes.

An artifact that is one file (a Trivy DB) has one writer, and it runs after every
other step; whatever sits between the run files and that writer (the k-way merge,
dropping superseded values, combining the values several records gave one key) would
run on that one worker too, while the others idle. So :class:`RunGroups` cuts a
group's key space at keys sampled from its runs into ranges of about equal bytes and
has helper processes (``python -m stella.rangemerge``, up to the run's worker count)
merge and reduce one range each into a local run file; the writer reads the ranges
in key order as they complete, so it writes one range while the helpers merge the
next. The bytes are those of the serial path for any number of ranges or helpers: a
key lies in exactly one range, so a reducer sees every pair of the keys it owns.

A reducer is a module-level function ``(pairs, context, counts) -> pairs``: the helper
imports it by name, reads ``context`` (opaque bytes, e.g. the superseded digests) from
a file, and sends ``counts`` back as JSON.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stella import storage
from stella.sorting import RunSlice, merge_slices, sample_keys, write_blocks

__all__ = ["PairLists", "Reducer", "RunGroups", "SortedGroups", "main", "run_task", "split_keys"]

_LOG = logging.getLogger(__name__)

Pair = tuple[bytes, bytes]
Reducer = Callable[[Iterator[Pair], bytes, Counter[str]], Iterable[Pair]]
"""(one key range's pairs in order, context bytes, counts to add to) -> output pairs in key order."""

# Ranges per helper: more than one, so a helper that drew a cheap range takes another
# and the writer's first wait (one range) is short; few, since each range opens every
# slice and each helper costs a process start (~0.1 s).
_RANGES_PER_HELPER = 3
# Below this many pairs (~80,000 advisories' worth of a Trivy DB) a group is reduced in
# the calling process: six helper starts (~0.1 s each) would cost more than they save.
_MIN_PARALLEL_PAIRS = 200_000
# One sampled key per this many blocks of a slice (blocks hold ~32 KiB each).
_SAMPLE_EVERY = 8


class SortedGroups(Protocol):
    """The sorted (key, value) pairs of each group of one sort, as a merge step reads them."""

    def pairs(self, group: str) -> Iterator[Pair]:
        """The group's pairs in (key, value) order (none for a group without items)."""

    def reduce(
        self, group: str, reducer: Reducer, context: bytes, counts: Counter[str]
    ) -> AbstractContextManager[Iterator[Pair]]:
        """``reducer`` applied to the group's pairs, its output in key order, while the context is open.

        Helpers (if any) start on entering, so the caller may do other work while they
        merge the first ranges; leaving stops them, whether the output was read or not.
        """


@dataclass(frozen=True)
class PairLists:
    """Groups held in memory as sorted lists (the benchmarks' adapter loop, tests)."""

    groups: Mapping[str, Sequence[Pair]]

    def pairs(self, group: str) -> Iterator[Pair]:
        return iter(self.groups.get(group, ()))

    def reduce(
        self, group: str, reducer: Reducer, context: bytes, counts: Counter[str]
    ) -> AbstractContextManager[Iterator[Pair]]:
        return _in_process(self, group, reducer, context, counts)


@dataclass(frozen=True)
class RunGroups:
    """Groups as run slices on storage; ``helpers`` processes may reduce a group in key ranges.

    Args:
        slices: group -> its run slices.
        temp_dir: where merges spill (see :func:`~stella.sorting.merge_slices`); for the
            range path also where the helpers' task, context and output files go, so the
            range path is taken only when it is a local folder.
        helpers: how many helper processes may run at once (the run's worker count); 1
            reduces in the calling process.
        executable: the Python that runs a helper (this one unless told).
        min_pairs: a group of fewer pairs is reduced in the calling process (helpers
            would cost more than they save).
    """

    slices: Mapping[str, Sequence[RunSlice]]
    temp_dir: str | None = None
    helpers: int = 1
    executable: str = field(default=sys.executable)
    min_pairs: int = _MIN_PARALLEL_PAIRS

    def pairs(self, group: str) -> Iterator[Pair]:
        return merge_slices(self.slices.get(group, ()), temp_dir=self.temp_dir)

    def reduce(
        self, group: str, reducer: Reducer, context: bytes, counts: Counter[str]
    ) -> AbstractContextManager[Iterator[Pair]]:
        pieces = list(self.slices.get(group, ()))
        local = self.temp_dir is not None and not storage.is_remote(self.temp_dir)
        local = local and not any(storage.is_remote(piece.path) for piece in pieces)
        if self.helpers <= 1 or not local or sum(p.count for p in pieces) < self.min_pairs:
            return _in_process(self, group, reducer, context, counts)
        bounds = split_keys(pieces, self.helpers * _RANGES_PER_HELPER)
        if not bounds:
            return _in_process(self, group, reducer, context, counts)
        assert self.temp_dir is not None
        return _reduce_ranges(pieces, bounds, reducer, context, counts, self)


def _in_process(
    groups: SortedGroups, group: str, reducer: Reducer, context: bytes, counts: Counter[str]
) -> AbstractContextManager[Iterator[Pair]]:
    return nullcontext(iter(reducer(groups.pairs(group), context, counts)))


def split_keys(pieces: Sequence[RunSlice], parts: int) -> list[bytes]:
    """Up to ``parts - 1`` keys cutting the pieces' key space into ranges of about equal bytes.

    Quantiles of block keys sampled from every piece, so a range holds about as many
    blocks, across all runs, as any other. Which keys are picked changes only how the
    work is divided, never the output.
    """
    samples = sorted(key for piece in pieces for key in sample_keys(piece, _SAMPLE_EVERY))
    if parts < 2 or len(samples) < parts:
        return []
    return sorted({samples[len(samples) * index // parts] for index in range(1, parts)} - {samples[0]})


def _reducer_name(reducer: Reducer) -> str:
    name = f"{reducer.__module__}:{reducer.__qualname__}"
    if "<" in name or _load(name) is not reducer:
        raise ValueError(f"a range reducer must be a module-level function, not {name}")
    return name


def _load(name: str) -> Any:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


@contextmanager
def _reduce_ranges(
    pieces: Sequence[RunSlice],
    bounds: Sequence[bytes],
    reducer: Reducer,
    context: bytes,
    counts: Counter[str],
    groups: RunGroups,
) -> Iterator[Iterator[Pair]]:
    """Starts the helpers; the ranges' outputs in key order, read as each range's helper finishes."""
    assert groups.temp_dir is not None
    name = _reducer_name(reducer)
    work = Path(storage.join(groups.temp_dir, f"ranges-{uuid.uuid4().hex}"))
    edges: list[bytes | None] = [None, *bounds, None]
    tasks: list[dict[str, Any]] = [
        {
            "slices": [_slice_json(piece) for piece in pieces],
            "lo": None if lo is None else lo.hex(),
            "hi": None if hi is None else hi.hex(),
            "reducer": name,
            "context": str(work / "context"),
            "out": str(work / f"range-{index:04d}.bin"),
            "temp_dir": str(work),
        }
        for index, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]
    _LOG.info("reducing %d key ranges on %d helper processes", len(tasks), groups.helpers)
    helpers = _Helpers(groups.executable, work)
    pool = ThreadPoolExecutor(max_workers=groups.helpers, thread_name_prefix="range-helper")
    work.mkdir(parents=True)
    try:
        (work / "context").write_bytes(context)
        futures: list[Future[dict[str, Any]]] = [
            pool.submit(helpers.run, index, task) for index, task in enumerate(tasks)
        ]
        yield _outputs(futures, tasks, counts)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        helpers.stop()
        pool.shutdown(wait=True)
        storage.remove_tree(str(work))


def _outputs(
    futures: Sequence[Future[dict[str, Any]]], tasks: Sequence[dict[str, Any]], counts: Counter[str]
) -> Iterator[Pair]:
    for future, task in zip(futures, tasks, strict=True):
        result = future.result()
        counts.update(result["counts"])
        out = RunSlice(task["out"], "range", 0, 0, result["length"], result["count"])
        yield from merge_slices([out])
        os.unlink(task["out"])


class _Helpers:
    """Starts one helper process per task (from the pool's threads) and kills them all on :meth:`stop`."""

    def __init__(self, executable: str, work: Path) -> None:
        self._executable = executable
        self._work = work
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._stopped = False

    def run(self, index: int, task: dict[str, Any]) -> dict[str, Any]:
        task_file = self._work / f"task-{index:04d}.json"
        task_file.write_text(json.dumps(task))
        with self._lock:
            if self._stopped:
                raise OSError("the range merge was stopped")
            process = subprocess.Popen(
                # -P: not the cwd first on sys.path, where another checkout's ``stella`` would shadow ours
                [self._executable, "-P", "-m", "stella.rangemerge", str(task_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            self._running.add(process)
        try:
            out, err = process.communicate()
        finally:
            with self._lock:
                self._running.discard(process)
        if process.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            message = lines[-1] if lines else f"exit status {process.returncode}"
            raise OSError(f"merging key range {index + 1} of the sorted runs failed: {message}")
        result: dict[str, Any] = json.loads(out)
        return result

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self._running:
                process.kill()


def _slice_json(piece: RunSlice) -> list[Any]:
    return [piece.path, piece.group, piece.bucket, piece.offset, piece.length, piece.count, piece.width]


def run_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """One helper's work: merge the task's slices within its range, reduce, write the output run."""
    reducer: Reducer = _load(task["reducer"])
    slices = [RunSlice(*fields) for fields in task["slices"]]
    lo = None if task["lo"] is None else bytes.fromhex(task["lo"])
    hi = None if task["hi"] is None else bytes.fromhex(task["hi"])
    context = Path(task["context"]).read_bytes()
    counts: Counter[str] = Counter()
    pairs = merge_slices(slices, temp_dir=task["temp_dir"], lo=lo, hi=hi)
    with open(task["out"], "wb") as handle:
        length, count = write_blocks(handle, reducer(pairs, context, counts))
    return {"counts": dict(counts), "length": length, "count": count}


def main(argv: Sequence[str]) -> int:
    """``python -m stella.rangemerge TASK.json``: prints the result as JSON; exit 1 with the error on stderr."""
    try:
        task = json.loads(Path(argv[0]).read_text())
        print(json.dumps(run_task(task)))
    except Exception as exc:  # the parent turns this line into its error
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
