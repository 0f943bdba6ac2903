-- Which worker ran each attempt (issue 14: `boundaries jobs show`): the Celery node name (`-n`,
-- `celery@<host>` by default) and the process id, e.g. 'celery@gpu-3 pid 4121'. NULL on attempts
-- recorded before this column, or claimed outside a Celery worker.
ALTER TABLE boundary_inference_job_attempts ADD COLUMN IF NOT EXISTS worker text;
