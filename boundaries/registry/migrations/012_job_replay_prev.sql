-- A replay that could not be sent must leave the failed job as it was (issue 14 operator pass: a `dlq replay`
-- with the broker down wiped the job's error_message). Jobs.record keeps the fields a replay resets here;
-- Jobs.undo(replay=True) restores them; Jobs.mark_sent clears it. jsonb: error_message, completed_at,
-- source, priority, sent_at of the failed row.
ALTER TABLE boundary_inference_jobs ADD COLUMN IF NOT EXISTS replay_prev jsonb;
