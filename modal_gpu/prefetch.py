"""A bounded background producer: the next items are made while the caller works on this one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Iterator[T]):
    """Iterate ``make()``'s iterator in a daemon thread, at most ``depth`` items ahead of the consumer.

    The producer's exception is re-raised in the consumer at the point it happened (items before it
    are delivered first). :meth:`close` (also on ``with`` exit and when the consumer stops early)
    stops the producer at its next item and closes its iterator, so a reader's thread pool shuts
    down. ``busy_s``: seconds the producer spent making items (its own work, not waiting for space).
    """

    def __init__(self, make: Callable[[], Iterator[T]], depth: int = 2, name: str = "prefetch"):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        import time

        it = None
        try:
            t = time.perf_counter()
            it = make()
            for item in it:
                self.busy_s += time.perf_counter() - t
                if not self._put(item):
                    return
                t = time.perf_counter()
            self.busy_s += time.perf_counter() - t
            self._put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # idempotent end
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(_DONE)
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
