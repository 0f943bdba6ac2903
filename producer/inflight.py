"""Waiting for another request's job to be sent, without holding a worker thread, once per job.

A webhook whose job was recorded by another request that has not sent it yet (``EnqueueResult`` status
``in_flight``) may only be answered "duplicate" once that job is sent: the other request may still undo
it (boundaries/enqueue.py). Waiting inside the enqueue's worker thread let a burst of copies of one such
event fill anyio's thread pool (40 threads) with 5 ms polls, so unrelated webhooks timed out (503) while
every service was up. Here the wait is an asyncio task per job id, shared by all copies in this process;
each poll borrows a thread for one primary-key read, backing off from 5 ms to 50 ms.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio
import anyio.to_thread
import structlog

from boundaries.enqueue import Enqueuer

log = structlog.get_logger(__name__)

Outcome = Literal["sent", "unsent", "gone", "error"]


class InFlightJobs:
    """``await wait(job_id, budget_s)`` → ``sent`` / ``gone`` (undone: enqueue again) / ``unsent`` (still
    not sent after ``budget_s`` seconds) / ``error`` (the registry could not be read)."""

    def __init__(self, enqueuer: Enqueuer):
        self.enqueuer = enqueuer
        self._polls: dict[str, asyncio.Task[Outcome]] = {}

    async def wait(self, job_id: str, budget_s: float) -> Outcome:
        task = self._polls.get(job_id)
        if task is None:
            task = asyncio.ensure_future(self._poll(job_id, budget_s))
            self._polls[job_id] = task
            task.add_done_callback(lambda _t: self._polls.pop(job_id, None))
        return await asyncio.shield(task)  # a caller past its deadline does not cancel the others' poll

    async def _poll(self, job_id: str, budget_s: float) -> Outcome:
        deadline = anyio.current_time() + budget_s
        delay = 0.005
        while True:
            try:
                state = await anyio.to_thread.run_sync(self.enqueuer.send_state, job_id, abandon_on_cancel=True)
            except Exception as e:  # registry down or hung: the caller answers 503
                log.warning("webhook.in_flight_poll_failed", job_id=job_id, error=str(e)[:300])
                return "error"
            if state != "unsent" or anyio.current_time() + delay > deadline:
                return state
            await anyio.sleep(delay)
            delay = min(2 * delay, 0.05)
