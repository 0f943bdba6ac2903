"""The job state machine: the ONE module that writes ``boundary_inference_jobs`` and
``boundary_inference_job_attempts`` rows (COMPAT.md §6, ARCHITECTURE.md "Packages").

Every state change is a named transition, one transaction, guarded by its precondition (a
transition whose precondition no longer holds changes nothing and says so)::

    record ──▶ queued ──claim──▶ running ──complete──▶ completed
                 ▲                 │ ├──retry──────▶ queued (the attempt closed as ``retry``)
                 │                 │ ├──release────▶ (row deleted: the reconciler finds the version again)
                 │                 │ ├──reject─────▶ failed  (+ a rejection row)
                 │                 │ └──dead_letter▶ failed  (+ a dead letter)
                 └────requeue──────┘   (the sweep: a running job whose heartbeat went stale)
    failed ──record(source="replay")──▶ queued        undo: a queued row never sent is deleted

``heartbeat`` refreshes a running attempt; ``mark_sent`` / ``unmark_sent`` / ``claim_unsent`` keep the
``sent_at`` bookkeeping of the producer's sends. Reads (``get``, ``find``, ``attempts_of`` …) live here
too so that callers need one object for a job.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import Jsonb

from boundaries.errors import PermanentError, TransientError
from boundaries.events import JobEvent
from boundaries.registry.db import Database


class JobBusy(TransientError):
    """The job is running on another live worker (fresh heartbeat); try again later."""

    error_type = "job_busy"


class AttemptsExhausted(PermanentError):
    """The job has used ``max_attempts`` starts in this round (attempts are counted when they start, so
    a job whose attempts kill the worker — OOM, segfault, kill -9 — runs out too); it was dead-lettered
    at this claim (:attr:`dead_letter_id`) instead of being started again."""

    error_type = "attempts_exhausted"

    def __init__(self, message: str, dead_letter_id: str | None = None, workers_lost: int = 0):
        super().__init__(message)
        self.dead_letter_id, self.workers_lost = dead_letter_id, workers_lost
        if workers_lost:
            self.error_type = "worker_lost"


_JOBS = "boundary_inference_jobs"
_ATTEMPTS = "boundary_inference_job_attempts"


_ROUND_START = (f"COALESCE((SELECT max(a.attempt) FROM {_ATTEMPTS} a WHERE a.job_id = j.id"
                " AND a.outcome IN ('failed', 'rejected')), 0)")
"""The last attempt that ended the job before a replay: attempts after it are this round's."""


def _job_event(row: dict) -> dict:
    """The job message (JobEvent JSON) of a job row, for a dead letter written without one."""
    return {"video_id": str(row["video_id"]), "tenant_id": str(row["tenant_id"]),
            "cropped_frames_version": row["cropped_frames_version"], "model_version": row["model_version"],
            "priority": row["priority"], "source": row["source"] or "webhook", "job_id": str(row["id"])}


def _close_attempt(c, job_id: str, attempt: int, outcome: str, error_type: str | None,
                   error_message: str | None) -> None:
    c.execute(f"UPDATE {_ATTEMPTS} SET finished_at = now(), outcome = %s, error_type = %s, error_message = %s"
              " WHERE job_id = %s AND attempt = %s",
              (outcome, error_type, None if error_message is None else error_message[:2000], job_id, attempt))


class Jobs:
    """Job and attempt rows of one registry schema (``db``). Thread-safe (one pooled connection per call)."""

    def __init__(self, db: Database):
        self.db = db

    # --- reads ----------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute(f"SELECT * FROM {_JOBS} WHERE id = %s", (job_id,)).fetchone()

    def find(self, video_id: str, version: int, model_version: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute(
                f"SELECT * FROM {_JOBS} WHERE video_id = %s AND cropped_frames_version = %s AND model_version = %s",
                (video_id, version, model_version),
            ).fetchone()

    def send_state(self, job_id: str) -> dict | None:
        """``{"status", "sent_at"}`` of a job, or None when it does not exist."""
        with self.db.connection(autocommit=True) as c:
            return c.execute(f"SELECT status, sent_at FROM {_JOBS} WHERE id = %s", (job_id,)).fetchone()

    def attempts_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.db.connection() as c:
            return c.execute(
                "SELECT attempt, started_at, finished_at, outcome, error_type, error_message, worker"
                f" FROM {_ATTEMPTS} WHERE job_id = %s ORDER BY attempt", (job_id,),
            ).fetchall()

    def attempts_since_replay(self, job_id: str, attempt: int) -> int:
        """Attempts of the current round: ``attempt`` minus the last attempt that ended the job
        (``failed``/``rejected``) before a replay. The retry budget (settings.max_attempts) is per round."""
        with self.db.connection() as c:
            row = c.execute(
                f"SELECT COALESCE(max(attempt), 0) AS last FROM {_ATTEMPTS}"
                " WHERE job_id = %s AND attempt < %s AND outcome IN ('failed', 'rejected')", (job_id, attempt),
            ).fetchone()
            return attempt - int(row["last"])

    @staticmethod
    def prime_connection(conn) -> None:
        """Plan (EXPLAIN, nothing runs) the producer's statements on ``conn``: a new PostgreSQL backend
        loads the catalog entries of the jobs table and its indexes on first use, ≈5–20 ms that the
        first webhooks served by each pooled connection would otherwise pay."""
        nil = "00000000-0000-0000-0000-000000000000"
        conn.execute(
            f"EXPLAIN INSERT INTO {_JOBS} (video_id, tenant_id, cropped_frames_version,"
            " model_version, status, priority, source) VALUES (%s,%s,1,'m','queued','high','webhook')"
            " ON CONFLICT (video_id, cropped_frames_version, model_version) DO NOTHING RETURNING id", (nil, nil))
        conn.execute(f"EXPLAIN SELECT id FROM {_JOBS} WHERE video_id = %s"
                     " AND cropped_frames_version = 1 AND model_version = 'm'", (nil,))
        conn.execute(f"EXPLAIN UPDATE {_JOBS} SET sent_at = now() WHERE id = %s", (nil,))
        conn.execute(f"SELECT status, sent_at FROM {_JOBS} WHERE id = %s", (nil,))

    # --- record / undo / send bookkeeping (producer) --------------------------------------------
    def record(self, event: JobEvent) -> tuple[str | None, bool]:
        """Record the job as ``queued`` unless one exists for its idempotency key.

        Returns ``(job_id, created)``, or ``(None, False)`` when the conflicting row was deleted between
        the INSERT and the SELECT (its owner undid it): the caller tries again. A replay of a ``failed``
        job puts it back to ``queued`` (with the replay's priority) and counts as created (it must be
        enqueued again). Each statement commits on its own (autocommit: one round trip on the webhook path).
        """
        with self.db.connection(autocommit=True) as c:
            row = c.execute(
                f"INSERT INTO {_JOBS} (video_id, tenant_id, cropped_frames_version,"
                " model_version, status, priority, source) VALUES (%s,%s,%s,%s,'queued',%s,%s)"
                " ON CONFLICT (video_id, cropped_frames_version, model_version) DO NOTHING RETURNING id",
                (event.video_id, event.tenant_id, event.cropped_frames_version, event.model_version,
                 event.priority, event.source),
            ).fetchone()
            if row:
                return str(row["id"]), True
            if event.source == "replay":
                row = c.execute(
                    f"UPDATE {_JOBS} SET status = 'queued', error_message = NULL,"
                    " completed_at = NULL, updated_at = now(), source = 'replay', sent_at = NULL, priority = %s,"
                    " replay_prev = jsonb_build_object('error_message', error_message, 'completed_at', completed_at,"
                    "  'source', source, 'priority', priority, 'sent_at', sent_at)"
                    " WHERE video_id = %s AND cropped_frames_version = %s AND model_version = %s"
                    " AND status = 'failed' RETURNING id",
                    (event.priority, event.video_id, event.cropped_frames_version, event.model_version),
                ).fetchone()
                if row:
                    return str(row["id"]), True
            row = c.execute(
                f"SELECT id FROM {_JOBS} WHERE video_id = %s AND cropped_frames_version = %s AND model_version = %s",
                (event.video_id, event.cropped_frames_version, event.model_version),
            ).fetchone()
            return (str(row["id"]), False) if row else (None, False)

    def undo(self, job_id: str, *, replay: bool) -> bool:
        """Take back a job this caller recorded and could not send: a ``queued`` row never marked sent
        is deleted (a replayed one goes back to ``failed`` with the error, completion time, source,
        priority and sent time it had before the replay: ``replay_prev``). Never touches a row another
        request sent meanwhile. Returns whether a row changed."""
        with self.db.connection() as c:
            if replay:
                return c.execute(
                    f"UPDATE {_JOBS} SET status = 'failed', updated_at = now(),"
                    " error_message = COALESCE(replay_prev->>'error_message', error_message),"
                    " completed_at = COALESCE((replay_prev->>'completed_at')::timestamptz, completed_at),"
                    " source = COALESCE(replay_prev->>'source', source),"
                    " priority = COALESCE(replay_prev->>'priority', priority),"
                    " sent_at = (replay_prev->>'sent_at')::timestamptz, replay_prev = NULL"
                    " WHERE id = %s AND status = 'queued' AND sent_at IS NULL", (job_id,)).rowcount == 1
            return c.execute(f"DELETE FROM {_JOBS} WHERE id = %s AND status = 'queued' AND sent_at IS NULL",
                             (job_id,)).rowcount == 1

    def mark_sent(self, job_id: str) -> None:
        """Record that the job's message was sent (``sent_at``)."""
        with self.db.connection(autocommit=True) as c:
            c.execute(f"UPDATE {_JOBS} SET sent_at = now(), replay_prev = NULL WHERE id = %s", (job_id,))

    def unmark_sent(self, job_id: str) -> None:
        """Clear ``sent_at`` of a ``queued`` job whose send failed (the reconciler re-sends it)."""
        with self.db.connection(autocommit=True) as c:
            c.execute(f"UPDATE {_JOBS} SET sent_at = NULL WHERE id = %s AND status = 'queued'", (job_id,))

    def claim_unsent(self, older_than_s: float, limit: int = 1000, *, job_id: str | None = None) -> list[dict]:
        """``queued`` jobs never marked sent whose row is older than ``older_than_s`` seconds (only
        ``job_id`` when given), marked sent now (so concurrent callers take each once); the caller sends
        them and calls :meth:`unmark_sent` for any it could not."""
        with self.db.connection() as c:
            return c.execute(
                f"UPDATE {_JOBS} SET sent_at = now() WHERE id IN (SELECT id FROM {_JOBS}"
                " WHERE status = 'queued' AND sent_at IS NULL"
                " AND updated_at < now() - make_interval(secs => %s::float8)"
                " AND (%s::uuid IS NULL OR id = %s::uuid)"
                " ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (older_than_s, job_id, job_id, limit),
            ).fetchall()

    # --- worker transitions ---------------------------------------------------------------------
    def claim(self, job_id: str, *, stale_after_s: float | None = None, max_attempts: int | None = None,
              worker: str | None = None) -> int | None:
        """Claim the job for one attempt: status ``running``, attempts + 1, a job_attempts row (an earlier
        attempt left open — its worker died — is closed ``abandoned``).

        ``stale_after_s``: a ``running`` job is only taken over when its ``heartbeat_at`` is older
        than this many seconds (its worker vanished); None takes it over unconditionally.
        ``max_attempts``: a job that has already started this many attempts in this round (since its last
        replay) is not started again: it is dead-lettered here, in the same transaction, with a reason
        that says how many of those attempts lost their worker.
        ``worker``: who runs the attempt (kept on its row for ``boundaries jobs show``; migration 011).

        Returns the attempt number, or None when the job is not claimable (completed, failed, or its row
        is gone: a redelivered message of a finished job, nothing to do).

        Raises:
            JobBusy: the job is running with a fresh heartbeat (another live worker has it).
            AttemptsExhausted: the job was dead-lettered at this claim (nothing else to do).
        """
        exhausted: AttemptsExhausted | None = None
        with self.db.connection() as c:
            job = c.execute(
                f"SELECT j.*, j.attempts - {_ROUND_START} AS round_attempts,"
                " (j.heartbeat_at IS NOT NULL AND %s::float8 IS NOT NULL"
                "  AND j.heartbeat_at >= now() - make_interval(secs => %s::float8)) AS fresh"
                f" FROM {_JOBS} j WHERE j.id = %s FOR UPDATE",
                (stale_after_s, stale_after_s, job_id),
            ).fetchone()
            if job is None or job["status"] not in ("queued", "running"):
                return None
            if job["status"] == "running" and job["fresh"]:
                raise JobBusy(f"job {job_id} is running with a fresh heartbeat ({job['heartbeat_at']}); "
                              "another worker has it")
            if max_attempts is not None and job["round_attempts"] >= max_attempts:
                exhausted = self._exhaust(c, job, max_attempts)
            else:
                attempt = c.execute(
                    f"UPDATE {_JOBS} SET status = 'running', attempts = attempts + 1, retry_at = NULL,"
                    " started_at = COALESCE(started_at, now()), heartbeat_at = now(), updated_at = now()"
                    " WHERE id = %s RETURNING attempts", (job_id,),
                ).fetchone()["attempts"]
                c.execute(f"UPDATE {_ATTEMPTS} SET finished_at = now(), outcome = 'abandoned',"
                          " error_message = 'worker lost (the attempt never finished)'"
                          " WHERE job_id = %s AND attempt < %s AND finished_at IS NULL", (job_id, attempt))
                c.execute(f"INSERT INTO {_ATTEMPTS} (job_id, attempt, worker) VALUES (%s, %s, %s)",
                          (job_id, attempt, worker))
                return int(attempt)
        raise exhausted

    def _exhaust(self, c, job: dict, max_attempts: int) -> AttemptsExhausted:
        """Dead-letter ``job`` (locked, ``round_attempts`` >= ``max_attempts``) inside transaction ``c``:
        open attempts closed ``abandoned``, job ``failed``, a dead letter whose reason counts the attempts
        that lost their worker (never finished, or closed ``abandoned``)."""
        job_id, start = str(job["id"]), int(job["attempts"]) - int(job["round_attempts"])
        c.execute(f"UPDATE {_ATTEMPTS} SET finished_at = now(), outcome = 'abandoned',"
                  " error_message = 'worker lost (the attempt never finished)'"
                  " WHERE job_id = %s AND finished_at IS NULL", (job_id,))
        lost = c.execute(f"SELECT count(*) AS n FROM {_ATTEMPTS} WHERE job_id = %s AND attempt > %s"
                         " AND outcome = 'abandoned'", (job_id, start)).fetchone()["n"]
        used = int(job["round_attempts"])
        if lost:
            error_type = "worker_lost"
            message = (f"job {job_id} used its {used} of max_attempts={max_attempts} attempts; the worker was "
                       f"lost {lost} times (killed, out of memory or crashed mid-attempt: a job that kills "
                       "its worker); fix the cause, then replay the dead letter")
        else:
            error_type = "attempts_exhausted"
            message = (f"job {job_id} used its {used} of max_attempts={max_attempts} attempts; "
                       f"last error: {job['error_message']}")
        c.execute(f"UPDATE {_JOBS} SET status = 'failed', completed_at = now(), error_message = %s,"
                  " retry_at = NULL, updated_at = now() WHERE id = %s", (f"{error_type}: {message}"[:2000], job_id))
        dl_id = self._insert_dead_letter(c, job_id, _job_event(job), error_type, message, None)
        return AttemptsExhausted(message, dl_id, int(lost))

    def heartbeat(self, job_id: str, attempt: int | None = None) -> bool:
        """Refresh ``heartbeat_at`` of a running job (of ``attempt`` only, when given). Returns
        False when the job is no longer running that attempt (taken over or finished)."""
        with self.db.connection() as c:
            return c.execute(
                f"UPDATE {_JOBS} SET heartbeat_at = now() WHERE id = %s AND status = 'running'"
                " AND (%s::int IS NULL OR attempts = %s::int)", (job_id, attempt, attempt),
            ).rowcount == 1

    def retry(self, job_id: str, attempt: int, error_type: str, error_message: str, *, delay_s: float = 0.0
              ) -> bool:
        """Close ``attempt`` as ``retry`` and put the job back to ``queued``, due in ``delay_s`` seconds
        (``retry_at``), while that attempt still owns it (``running`` with this attempt number). No
        message is sent or held: the due-retry loop (``claim_due_retries``) sends it when due. Returns
        whether the job changed."""
        with self.db.connection() as c:
            _close_attempt(c, job_id, attempt, "retry", error_type, error_message)
            # sent_at stays set: the job is not "recorded and never sent" (the reconciler's resend and a
            # repeated webhook leave it alone); the due-retry loop owns its next message
            return c.execute(
                f"UPDATE {_JOBS} SET status = 'queued', error_message = %s, updated_at = now(),"
                " retry_at = now() + make_interval(secs => %s::float8), sent_at = COALESCE(sent_at, now())"
                " WHERE id = %s AND status = 'running' AND attempts = %s",
                (error_message[:2000], max(0.0, delay_s), job_id, attempt),
            ).rowcount == 1

    def reschedule_retry(self, job_id: str) -> None:
        """Put back a due retry whose send failed (broker down): due now again, so the next poll of the
        due-retry loop sends it (not the reconciler's resend after ``resend_unsent_after_s``)."""
        with self.db.connection(autocommit=True) as c:
            c.execute(f"UPDATE {_JOBS} SET retry_at = now() WHERE id = %s AND status = 'queued' AND retry_at IS NULL",
                      (job_id,))

    def claim_due_retries(self, limit: int = 1000) -> list[dict]:
        """``queued`` jobs whose ``retry_at`` has passed, with ``retry_at`` cleared and ``sent_at`` set now
        (concurrent callers take each once). The caller sends them and calls :meth:`unmark_sent` for any
        it could not (the reconciler's resend then picks it up)."""
        with self.db.connection() as c:
            return c.execute(
                f"UPDATE {_JOBS} SET retry_at = NULL, sent_at = now() WHERE id IN (SELECT id FROM {_JOBS}"
                " WHERE status = 'queued' AND retry_at <= now() ORDER BY retry_at LIMIT %s"
                " FOR UPDATE SKIP LOCKED) RETURNING *", (limit,),
            ).fetchall()

    def complete(self, job_id: str, attempt: int | None, run_uuid: str | None) -> bool:
        """Mark the job ``completed`` with its run (``boundary_inference_runs.id``) and close ``attempt``
        (when given) as ``completed``. Returns whether the job row changed."""
        with self.db.connection() as c:
            if attempt is not None:
                _close_attempt(c, job_id, attempt, "completed", None, None)
            return c.execute(
                f"UPDATE {_JOBS} SET status = 'completed', completed_at = now(),"
                " inference_run_id = %s, error_message = NULL, updated_at = now() WHERE id = %s",
                (run_uuid, job_id),
            ).rowcount == 1

    def release(self, job_id: str, attempt: int, error_type: str, error_message: str) -> bool:
        """Delete the job row while ``attempt`` still holds it (``running``), with its attempt rows, so that
        the reconciler (``Registry.active_versions_without_job``) finds the version again. Returns whether
        a row was deleted."""
        with self.db.connection() as c:
            _close_attempt(c, job_id, attempt, "not_active", error_type, error_message)
            return c.execute(f"DELETE FROM {_JOBS} WHERE id = %s AND status = 'running' AND attempts = %s",
                             (job_id, attempt)).rowcount == 1

    def reject(self, job_id: str, attempt: int, event: JobEvent, *, rejection_type: str, message: str,
               frame_count: int | None = None, estimated_cost_usd: float | None = None) -> str | None:
        """A permanent refusal (limits, COMPAT.md §6): a rejection row, the attempt closed ``rejected`` and
        the job ``failed``, in one transaction, only while ``attempt`` owns the job. Returns the rejection's
        id, or None when superseded (nothing written)."""
        with self.db.connection() as c:
            if not self._fail(c, job_id, f"rejected ({rejection_type}): {message}", attempt):
                return None
            _close_attempt(c, job_id, attempt, "rejected", rejection_type, message)
            row = c.execute(
                "INSERT INTO boundary_inference_rejections (video_id, tenant_id, rejection_type,"
                " rejection_message, frame_count, estimated_cost_usd, cropped_frames_version, model_version,"
                " priority) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (event.video_id, event.tenant_id, rejection_type, message[:2000], frame_count, estimated_cost_usd,
                 event.cropped_frames_version, event.model_version, event.priority),
            ).fetchone()
            return str(row["id"])

    def dead_letter(self, job_id: str, attempt: int, event: dict, *, error_type: str, error_message: str,
                    traceback: str | None = None) -> str | None:
        """Give up on the job: the attempt closed ``failed``, the job ``failed`` and a dead letter holding
        ``event`` (the job's message, JSON), the error and the attempt history, in one transaction, only
        while ``attempt`` still owns the job (a superseded attempt — its worker stalled and another took
        over — changes nothing). Returns the dead letter's id, or None when superseded."""
        with self.db.connection() as c:
            if not self._fail(c, job_id, f"{error_type}: {error_message}", attempt):
                return None
            _close_attempt(c, job_id, attempt, "failed", error_type, error_message)
            return self._insert_dead_letter(c, job_id, event, error_type, error_message, traceback)

    @staticmethod
    def _insert_dead_letter(c, job_id: str, event: dict, error_type: str, error_message: str,
                            traceback: str | None) -> str:
        history = c.execute(
            "SELECT attempt, started_at, finished_at, outcome, error_type, error_message, worker"
            f" FROM {_ATTEMPTS} WHERE job_id = %s ORDER BY attempt", (job_id,),
        ).fetchall()
        row = c.execute(
            "INSERT INTO boundary_inference_dead_letters (job_id, video_id, tenant_id, cropped_frames_version,"
            " model_version, event, error_type, error_message, traceback, attempts)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (job_id, event["video_id"], event["tenant_id"], event["cropped_frames_version"],
             event["model_version"], Jsonb(event), error_type, error_message[:4000],
             (traceback or "")[-8000:], Jsonb(json.loads(json.dumps(history, default=str)))),
        ).fetchone()
        return str(row["id"])

    @staticmethod
    def _fail(c, job_id: str, message: str, attempt: int) -> bool:
        return c.execute(
            f"UPDATE {_JOBS} SET status = 'failed', completed_at = now(), error_message = %s, retry_at = NULL,"
            " updated_at = now() WHERE id = %s AND status = 'running' AND attempts = %s",
            (message[:2000], job_id, attempt),
        ).rowcount == 1

    # --- sweep ----------------------------------------------------------------------------------
    def requeue(self, *, stale_after_s: float, queued_after_s: float, max_attempts: int | None = None,
                limit: int = 1000) -> tuple[list[dict], list[dict], list[str]]:
        """The sweep's transition, one transaction: ``running`` jobs whose heartbeat is older than
        ``stale_after_s`` go back to ``queued`` (their open attempt closed ``abandoned``) — or, when they
        have used ``max_attempts`` starts in this round, are dead-lettered (the same rule as
        :meth:`claim`) — and ``queued`` jobs untouched for ``queued_after_s`` (and not waiting for a
        retry that is not due) are touched; the rows to send are marked sent now.

        Returns ``(requeued_running, resent_queued, dead_lettered_job_ids)``; the caller sends the rows and
        calls :meth:`unmark_sent` for any it could not.
        """
        with self.db.connection() as c:
            candidates = c.execute(
                f"SELECT j.*, j.attempts - {_ROUND_START} AS round_attempts FROM {_JOBS} j"
                " WHERE j.status = 'running' AND (j.heartbeat_at IS NULL"
                "  OR j.heartbeat_at < now() - make_interval(secs => %s::float8))"
                " ORDER BY j.heartbeat_at NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED",
                (stale_after_s, limit),
            ).fetchall()
            dead = [r for r in candidates if max_attempts is not None and r["round_attempts"] >= max_attempts]
            for row in dead:
                self._exhaust(c, row, max_attempts)
            stale = c.execute(
                f"UPDATE {_JOBS} SET status = 'queued', updated_at = now(), sent_at = now(), retry_at = NULL,"
                " error_message = 'requeued by sweep: heartbeat stale since ' || heartbeat_at::text"
                " WHERE id = ANY(%s::uuid[]) RETURNING *",
                ([str(r["id"]) for r in candidates if r not in dead],),
            ).fetchall()
            for row in stale:
                c.execute(f"UPDATE {_ATTEMPTS} SET finished_at = now(), outcome = 'abandoned',"
                          " error_message = 'worker vanished (stale heartbeat)' WHERE job_id = %s AND attempt = %s"
                          " AND finished_at IS NULL", (row["id"], row["attempts"]))
            old = c.execute(
                f"UPDATE {_JOBS} SET updated_at = now(), sent_at = now(), retry_at = NULL"
                f" WHERE id IN (SELECT id FROM {_JOBS} WHERE status = 'queued'"
                "  AND updated_at < now() - make_interval(secs => %s::float8) AND NOT (id = ANY(%s::uuid[]))"
                "  AND (retry_at IS NULL OR retry_at <= now())"
                "  ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (queued_after_s, [str(r["id"]) for r in stale], limit),
            ).fetchall()
        return stale, old, [str(r["id"]) for r in dead]
