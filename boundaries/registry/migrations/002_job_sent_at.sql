-- When the job's Celery message was sent. NULL on a queued job: recorded but not (yet, or ever) sent —
-- e.g. the broker and PostgreSQL failed together after the row was written, so the producer could
-- neither send nor undo it. The first reconciler pass after settings.resend_unsent_after_s re-sends it.
ALTER TABLE boundary_inference_jobs ADD COLUMN IF NOT EXISTS sent_at timestamptz;
-- rows from before this column existed were sent by the producer that wrote them
UPDATE boundary_inference_jobs SET sent_at = created_at WHERE sent_at IS NULL;
