-- Frame-store prefixes that a re-ingest replaced (cropped_frames_versions.storage_prefix switched away
-- from them). A job that located the version before the switch may still read them, so the orphan
-- sweep (`boundaries store orphans --delete`) keeps them for its grace period after retired_at.
CREATE TABLE IF NOT EXISTS frame_store_retired (
    storage_prefix text PRIMARY KEY,
    layout_db_storage_key text,
    video_id uuid NOT NULL,
    version int NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);
