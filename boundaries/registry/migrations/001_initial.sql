-- Registry tables of COMPAT.md §6 (Supabase schema captionacc_production by default), plus the
-- job-attempt and dead-letter tables this project adds. Applied with search_path set to the schema.

CREATE TABLE IF NOT EXISTS videos (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    current_cropped_frames_version int,
    status text,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cropped_frames_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id uuid NOT NULL,
    tenant_id uuid NOT NULL,
    version int NOT NULL,
    storage_prefix text,
    layout_db_storage_key text,
    total_frames int,
    chunk_count int,
    frame_rate real DEFAULT 10,
    status text NOT NULL DEFAULT 'processing'
        CHECK (status IN ('processing', 'active', 'archived', 'failed')),
    activated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (video_id, version)
);

CREATE TABLE IF NOT EXISTS boundary_inference_runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id text NOT NULL UNIQUE,
    video_id uuid NOT NULL,
    tenant_id uuid NOT NULL,
    cropped_frames_version int NOT NULL,
    model_version text NOT NULL,
    model_checkpoint_path text,
    wasabi_storage_key text NOT NULL,
    file_size_bytes bigint,
    total_pairs int NOT NULL,
    processing_time_seconds real,
    started_at timestamptz,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (video_id, cropped_frames_version, model_version)
);

CREATE TABLE IF NOT EXISTS boundary_inference_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id uuid NOT NULL,
    tenant_id uuid NOT NULL,
    cropped_frames_version int NOT NULL,
    model_version text NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    priority text NOT NULL DEFAULT 'high' CHECK (priority IN ('high', 'low')),
    started_at timestamptz,
    completed_at timestamptz,
    error_message text,
    inference_run_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- added by this project
    attempts int NOT NULL DEFAULT 0,
    source text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz,
    UNIQUE (video_id, cropped_frames_version, model_version)
);

CREATE TABLE IF NOT EXISTS boundary_inference_rejections (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    video_id uuid,
    tenant_id uuid,
    rejection_type text NOT NULL CHECK (rejection_type IN
        ('frame_count_exceeded', 'cost_exceeded', 'validation_failed', 'rate_limited', 'queue_full')),
    rejection_message text,
    frame_count int,
    estimated_cost_usd real,
    cropped_frames_version int,
    model_version text,
    priority text,
    created_at timestamptz NOT NULL DEFAULT now(),
    acknowledged boolean NOT NULL DEFAULT false,
    acknowledged_at timestamptz
);

CREATE TABLE IF NOT EXISTS boundary_inference_job_attempts (
    id bigserial PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES boundary_inference_jobs (id) ON DELETE CASCADE,
    attempt int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text,
    error_type text,
    error_message text
);

CREATE TABLE IF NOT EXISTS boundary_inference_dead_letters (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id uuid REFERENCES boundary_inference_jobs (id) ON DELETE SET NULL,
    video_id uuid NOT NULL,
    tenant_id uuid NOT NULL,
    cropped_frames_version int NOT NULL,
    model_version text NOT NULL,
    event jsonb NOT NULL,
    error_type text NOT NULL,
    error_message text NOT NULL,
    traceback text,
    attempts jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    replay_count int NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS dead_letters_video_idx ON boundary_inference_dead_letters (video_id);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON boundary_inference_jobs (status);
