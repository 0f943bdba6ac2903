-- When a job waiting for its next attempt is due (issue 12: no worker holds a delayed message; a broker
-- restart while a worker held an ETA message took the worker down). NULL unless the job is 'queued'
-- after a failed attempt; the due-retry loop (boundaries reconcile --loop, boundaries run) sends it
-- once now() >= retry_at and clears it.
ALTER TABLE boundary_inference_jobs ADD COLUMN IF NOT EXISTS retry_at timestamptz;
CREATE INDEX IF NOT EXISTS jobs_retry_due_idx ON boundary_inference_jobs (retry_at)
    WHERE status = 'queued' AND retry_at IS NOT NULL;
