"""Run many searches at once with one generator call and one PRM call per round: ``Lockstep``.

Each search runs in its own thread; its generator and scorer calls go through ``Lockstep.batched(fn)``
wrappers. A call blocks until every live search is blocked in one, then the last one to arrive runs
each wrapped ``fn`` once over everything pending (in search order), hands each caller its share and
releases them all. So N searches cost about as many model calls as one, each N times larger, which
is what a batched generator (``prm.generation.HFCompleter``: shared prefill, one decode loop) or the
scoring service needs to be efficient. Which calls share a round depends only on what each search
asks, never on thread timing: with a seeded generator the results are reproducible.

``fn`` takes a list and returns a list of the same length (``completer.complete`` and a scorer over
(prompt, steps) pairs both do); a caller passes a list and gets its slice back. An exception in
``fn`` is raised in every caller of that round; one in a search is returned for that search alone.
Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


class _Slot:
    __slots__ = ("worker", "fn", "items", "result", "error", "done")

    def __init__(self, worker: int, fn, items: list):
        self.worker, self.fn, self.items = worker, fn, items
        self.result, self.error, self.done = None, None, False


class Lockstep:
    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self._pending: list[_Slot] = []
        self._local = threading.local()
        self._order: list[tuple[Callable, str]] = []
        self.rounds = 0
        self.calls: dict[str, int] = {}

    def batched(self, fn: Callable[[list], Sequence], name: str | None = None) -> Callable[[Sequence], list]:
        """``fn`` (list -> list of results) as a call that waits for the round; outside ``run`` it calls ``fn``."""
        label = name or getattr(fn, "__name__", "fn")
        self._order.append((fn, label))

        def call(items: Sequence) -> list:
            items = list(items)
            worker = getattr(self._local, "worker", None)
            if worker is None:  # not inside run(): nothing to wait for
                self.calls[label] = self.calls.get(label, 0) + 1
                return list(fn(items))
            slot = _Slot(worker, fn, items)
            with self._cond:
                self._pending.append(slot)
                if len(self._pending) == self._active:
                    self._flush()
                while not slot.done:
                    self._cond.wait()
            if slot.error is not None:
                raise slot.error
            return slot.result

        call.__name__ = label
        return call

    def run(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run each job in its own thread (job i is search i); returns each one's result or exception."""
        results: list[Any] = [None] * len(jobs)

        def work(i: int, job: Callable[[], Any]) -> None:
            self._local.worker = i
            try:
                results[i] = job()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, per search
                results[i] = exc
            finally:
                with self._cond:
                    self._active -= 1
                    if self._active and len(self._pending) == self._active:
                        self._flush()

        with self._cond:
            self._active = len(jobs)
        threads = [threading.Thread(target=work, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def _flush(self) -> None:
        """Every live search is waiting: run each fn once over its callers' items (held under the lock)."""
        pending, self._pending = sorted(self._pending, key=lambda s: s.worker), []
        self.rounds += 1
        for fn, label in self._order:
            slots = [s for s in pending if s.fn is fn]
            if not slots:
                continue
            items = [x for s in slots for x in s.items]
            self.calls[label] = self.calls.get(label, 0) + 1
            try:
                out = list(fn(items)) if items else []
                if len(out) != len(items):
                    raise ValueError(f"{label} returned {len(out)} results for {len(items)} items")
            except Exception as exc:  # noqa: BLE001 - every caller of the round sees it
                for s in slots:
                    s.error, s.done = exc, True
                continue
            at = 0
            for s in slots:
                s.result, s.done = out[at:at + len(s.items)], True
                at += len(s.items)
        self._cond.notify_all()
