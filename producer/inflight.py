"""Waiting for another request's job to be sent, without holding a worker thread, once per job.

A webhook whose job was recorded by another request that has not sent it yet (``EnqueueResult`` status
``in_flight``) may only be answered "duplicate" once that job is sent: the other request may still undo
it (producer/enqueue.py). Waiting inside the enqueue's worker thread let a burst of copies of one such
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

from producer.enqueue import Enqueuer

log = structlog.get_logger(__name__)

Outcome = Literal["sent", "unsent", "gone", "error"]


class InFlightJobs:
    """``await wait(job_id, budget_s)`` → ``sent`` / ``gone`` (undone: enqueue again) / ``unsent`` (still
    not sent after this caller's ``budget_s`` seconds) / ``error`` (the registry could not be read).

    One poll per job id serves every caller; it runs until the latest caller's budget is spent (each new
    caller extends it), and each caller stops waiting at its own budget.
    """

    def __init__(self, enqueuer: Enqueuer):
        self.enqueuer = enqueuer
        self._polls: dict[str, asyncio.Task[Outcome]] = {}
        self._until: dict[str, float] = {}

    async def wait(self, job_id: str, budget_s: float) -> Outcome:
        until = anyio.current_time() + budget_s
        self._until[job_id] = max(self._until.get(job_id, until), until)
        task = self._polls.get(job_id)
        if task is None or task.done():
            task = asyncio.ensure_future(self._poll(job_id))
            self._polls[job_id] = task
            task.add_done_callback(lambda t: self._forget(job_id, t))
        with anyio.move_on_after(budget_s):
            return await asyncio.shield(task)  # a caller past its budget does not cancel the others' poll
        return "unsent"

    def _forget(self, job_id: str, task: asyncio.Task) -> None:
        if self._polls.get(job_id) is task:
            del self._polls[job_id]
            self._until.pop(job_id, None)

    async def _poll(self, job_id: str) -> Outcome:
        delay = 0.005
        while True:
            try:
                state = await anyio.to_thread.run_sync(self.enqueuer.send_state, job_id, abandon_on_cancel=True)
            except Exception as e:  # registry down or hung: the caller answers 503
                log.warning("webhook.in_flight_poll_failed", job_id=job_id, error=str(e)[:300])
                return "error"
            if state != "unsent" or anyio.current_time() + delay > self._until.get(job_id, 0.0):
                return state
            await anyio.sleep(delay)
            delay = min(2 * delay, 0.05)
