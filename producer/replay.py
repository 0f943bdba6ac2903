"""Dead-letter replay: send dead-lettered jobs again, at a bounded rate, on a chosen queue.

Each dead letter's stored event is enqueued again with ``source="replay"`` through the idempotent
:class:`~producer.enqueue.Enqueuer` (whose messages go out through ``producer.dispatch.dispatch``): its
job row (``failed``) goes back to ``queued`` and one message is sent; a job that is queued, running or
completed already answers ``duplicate`` and sends nothing, so replaying twice (or
replaying two dead letters of one job) still runs the job once. The dead letter's bookkeeping
(``replay_count``, ``replayed_at``) changes only when a message was sent.

Rate: a token bucket without burst (pyrate-limiter's GCRA ``TokenBucket``): at most ``rate_per_s``
sends per second, evenly spaced, so replaying thousands after an outage neither stampedes the GPUs and
the registry nor floods the queue ahead of fresh events. Queue: ``priority`` (``settings.replay_priority``,
low by default): a worker takes fresh (high) events first (``settings.queue_order_strategy``).

Outcomes per dead letter: ``queued`` (a message was sent), ``duplicate`` (its job exists and is not
failed: nothing sent), ``not_found``, ``failed`` (this dead letter could not be replayed: its event is
invalid, or the registry/broker failed), ``skipped`` (not tried: an earlier send found the broker or
registry unreachable and the replay stopped, or Ctrl-C stopped it). A dry run sends nothing and
answers ``would_queue`` or ``would_duplicate`` from the job rows.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import structlog

from boundaries.events import JobEvent
from config.celery_app import queue_for
from producer.dispatch import QueueUnavailable

if TYPE_CHECKING:
    from boundaries.registry.dead_letters import DeadLetters
    from config.settings import Settings
    from producer.enqueue import Enqueuer

log = structlog.get_logger(__name__)

Status = Literal["queued", "duplicate", "not_found", "failed", "skipped", "would_queue", "would_duplicate"]
DONE: frozenset[str] = frozenset({"queued", "duplicate", "would_queue", "would_duplicate"})
"""Outcomes that leave the dead letter's job queued or already done (exit code 0)."""


@dataclass
class ReplayOutcome:
    dead_letter_id: str
    status: Status
    job_id: str | None = None
    video_id: str | None = None
    queue: str | None = None
    job_status: str | None = None
    error: str | None = None


@dataclass
class ReplaySummary:
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    """Ctrl-C (SIGINT) stopped the replay; the dead letters not tried are ``skipped``."""

    def counts(self) -> dict[str, int]:
        """``{status: count}`` over the outcomes, every status of a real replay present (0 when none)."""
        c = Counter(o.status for o in self.outcomes)
        base = ("would_queue", "would_duplicate") if c.keys() & {"would_queue", "would_duplicate"} else \
            ("queued", "duplicate", "failed", "not_found", "skipped")
        return {k: c.get(k, 0) for k in base} | dict(c)

    @property
    def ok(self) -> bool:
        """Every dead letter's job is queued or already done."""
        return all(o.status in DONE for o in self.outcomes)

    def as_json(self) -> dict:
        extra = {"interrupted": True} if self.interrupted else {}
        return {"summary": self.counts() | {"total": len(self.outcomes), "seconds": round(self.seconds, 3)} | extra,
                "results": [{k: v for k, v in asdict(o).items() if v is not None} for o in self.outcomes]}


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C (SIGINT) while the block runs; yields the list of signals held (empty: none), for the
    caller to act on after the block (a send and its bookkeeping are never split). Only in the main thread
    and while Python's default SIGINT handler is installed; elsewhere the block runs unchanged."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield held
        return
    signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def token_bucket(rate_per_s: float):
    """A blocking limiter of ``rate_per_s`` acquisitions per second (> 0), no burst; ``.try_acquire(name)``."""
    from pyrate_limiter import limiter_factory

    interval_ms = max(1, round(1000 / rate_per_s))
    return limiter_factory.create_token_bucket_limiter(1, interval_ms, burst=1, buffer_ms=0)


class Replayer:
    """Replays dead letters by id (see module docstring). ``rate_per_s`` 0 or None: unlimited."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer, dead_letters: DeadLetters, *,
                 priority: Literal["high", "low"] | None = None, rate_per_s: float | None = None,
                 dry_run: bool = False):
        self.settings, self.enqueuer, self.dead_letters = settings, enqueuer, dead_letters
        self.priority = priority or settings.replay_priority
        self.queue = queue_for(settings, self.priority)
        self.dry_run = dry_run
        rate = settings.replay_rate_per_s if rate_per_s is None else rate_per_s
        self._limiter = token_bucket(rate) if rate and not dry_run else None
        self._held_sigint: list[int] = []

    def replay(self, ids: Sequence[str], on_outcome: Callable[[ReplayOutcome], None] | None = None
               ) -> ReplaySummary:
        """Replay the dead letters ``ids`` in order; ``on_outcome`` is called after each (progress).

        Ctrl-C (``KeyboardInterrupt``) stops it between sends (one in progress is finished first): the
        summary holds what was done, the rest ``skipped``, and ``interrupted`` is set.
        """
        import time

        t0 = time.monotonic()
        summary = ReplaySummary()
        stopped: str | None = None
        try:
            for dl_id in ids:
                if stopped is not None:
                    out = ReplayOutcome(dl_id, "skipped", error=stopped)
                else:
                    out = self._one(dl_id)
                    if out.status == "failed" and out.error and out.error.startswith("unavailable: "):
                        stopped = f"not tried: {out.error}"
                summary.outcomes.append(out)
                if on_outcome is not None:
                    on_outcome(out)
                if self._held_sigint:  # Ctrl-C during that send: stop now that it is counted
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.outcomes.extend(ReplayOutcome(dl_id, "skipped", error="not tried: interrupted (Ctrl-C)")
                                    for dl_id in ids[len(summary.outcomes):])
        summary.seconds = time.monotonic() - t0
        log.info("dlq.replayed", priority=self.priority, dry_run=self.dry_run, interrupted=summary.interrupted,
                 **summary.counts())
        return summary

    def _one(self, dl_id: str) -> ReplayOutcome:
        try:
            row = self.dead_letters.get(dl_id)
        except Exception as e:  # noqa: BLE001 — the registry is down: stop, the rest are skipped
            return ReplayOutcome(dl_id, "failed", error=f"unavailable: {type(e).__name__}: {e}"[:500])
        if row is None:
            return ReplayOutcome(dl_id, "not_found")
        video_id = str(row["video_id"])
        try:
            event = JobEvent.model_validate({**row["event"], "source": "replay", "job_id": None,
                                             "priority": self.priority, "received_at": datetime.now(UTC)})
        except ValueError as e:  # a stored event that no longer validates: report it, go on with the rest
            return ReplayOutcome(dl_id, "failed", video_id=video_id, error=f"invalid event: {e}"[:500])
        if self.dry_run:
            return self._would(dl_id, event)
        if self._limiter is not None:
            self._limiter.try_acquire("dlq-replay")
        with sigint_deferred() as self._held_sigint:  # Ctrl-C here: replay() stops once this is counted
            try:
                res = self.enqueuer.enqueue(event)
            except QueueUnavailable as e:
                return ReplayOutcome(dl_id, "failed", video_id=video_id, error=f"unavailable: {e}"[:500])
            if res.status == "queued":
                try:
                    self.dead_letters.mark_replayed(dl_id)
                except Exception as e:  # noqa: BLE001 — the message is out; a later replay answers duplicate
                    log.warning("dlq.mark_replayed_failed", dead_letter_id=dl_id, error=str(e)[:300])
                return ReplayOutcome(dl_id, "queued", res.job_id, video_id, self.queue)
            return ReplayOutcome(dl_id, "duplicate", res.job_id, video_id)

    def _would(self, dl_id: str, event: JobEvent) -> ReplayOutcome:
        job = self.enqueuer.registry.jobs.find(event.video_id, event.cropped_frames_version, event.model_version)
        if job is None or job["status"] == "failed":
            return ReplayOutcome(dl_id, "would_queue", str(job["id"]) if job else None, event.video_id, self.queue)
        return ReplayOutcome(dl_id, "would_duplicate", str(job["id"]), event.video_id, job_status=job["status"])
