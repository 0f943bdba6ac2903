"""The Modal app (COMPAT.md §8): glue only; the shard logic is :func:`modal_gpu.shard.run_shard`.

* App ``boundary-inference`` (``settings.modal_app_name``), class ``BoundaryInference``: its
  ``@modal.enter`` loads the predictor once per container, its ``@modal.method``
  ``run_boundary_inference_batch(request: dict) -> dict`` runs one shard (the upstream GPU function
  of that name is this class's method; callers use ``modal.Cls.from_name(app, "BoundaryInference")``).
* ``test_inference``: reports GPU name, memory and CUDA availability (smoke test of a deployment).
* Volume ``boundary-models`` at ``/models``; checkpoints at ``/models/checkpoints/{model_version}.pt``
  (put there by ``boundaries upload-checkpoint``, worker/upload_checkpoint.py).
* Secret ``wasabi-credentials`` (``WASABI_ACCESS_KEY``, ``WASABI_SECRET_KEY``, ``WASABI_BUCKET``,
  ``WASABI_REGION``, ``WASABI_ENDPOINT``), mapped to the ``BOUNDARIES_S3_*`` variables that
  :func:`boundaries.storage.factory.open_store` / ``Settings`` read (:func:`map_wasabi_env`).

Configuration: this module is an edge (``modal deploy modal_gpu/app.py`` imports it), so it builds
``Settings()`` once at import, from ``BOUNDARIES_*`` variables of the deploying shell: GPU type,
timeout, max_containers, scaledown window and retries (:func:`cls_options`). Importing it needs no
Modal credentials (every Modal object here is lazy) and never imports torch.

Deploy: ``modal deploy modal_gpu/app.py``; smoke test: ``modal run modal_gpu/app.py``.
"""

import os  # no `from __future__ import annotations`: modal reads the class parameters' real types
from collections.abc import MutableMapping

import modal

from config.settings import Settings

SETTINGS = Settings()  # the edge: built once here, from the deploying shell's environment
APP_NAME = SETTINGS.modal_app_name
CLASS_NAME = "BoundaryInference"
METHOD_NAME = "run_boundary_inference_batch"
VOLUME_NAME = "boundary-models"
MODELS_DIR = "/models"
WASABI_SECRET_NAME = "wasabi-credentials"  # noqa: S105 — the name of a Modal secret, not a secret
PYTHON_VERSION = "3.11"

IMAGE_PACKAGES = (
    # Same pins as pyproject.toml (core deps the shard function imports + the `gpu` extra);
    # tests/unit/test_modal_app.py checks they match.
    "pydantic==2.13.4",
    "pydantic-settings==2.14.1",
    "structlog==26.1.0",
    "boto3==1.43.11",
    "numpy==2.4.6",
    "av==18.1.0",
    "pillow==13.0.0",
    "torch==2.14.1",
    "torchvision==0.29.1",
)
LOCAL_PACKAGES = ("config", "boundaries", "modal_gpu")

WASABI_ENV = {
    # secret variable -> what boundaries.storage reads (S3Store.from_description / Settings)
    "WASABI_ACCESS_KEY": "BOUNDARIES_S3_ACCESS_KEY_ID",
    "WASABI_SECRET_KEY": "BOUNDARIES_S3_SECRET_ACCESS_KEY",
    "WASABI_BUCKET": "BOUNDARIES_S3_BUCKET",
    "WASABI_REGION": "BOUNDARIES_S3_REGION",
    "WASABI_ENDPOINT": "BOUNDARIES_S3_ENDPOINT_URL",
}


def checkpoint_path_for(model_version: str) -> str:
    """Path of a checkpoint inside the container: ``/models/checkpoints/{model_version}.pt`` (COMPAT.md §8)."""
    if not model_version or "/" in model_version or model_version.startswith("."):
        raise ValueError(f"model_version must be a plain name like 'mrn0fkfd_a4b1a61c', got {model_version!r}")
    return f"{MODELS_DIR}/checkpoints/{model_version}.pt"


def map_wasabi_env(environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``WASABI_*`` secret variables to their ``BOUNDARIES_S3_*`` names where those are unset.

    Returns the names set (never values: they hold secrets)."""
    done = []
    for src, dst in WASABI_ENV.items():
        if environ.get(src) and not environ.get(dst):
            environ[dst] = environ[src]
            done.append(dst)
    return done


def cls_options(settings: Settings) -> dict:
    """Resource options of ``BoundaryInference`` from settings (COMPAT.md §8: GPU ``A10G``, upstream 5
    containers). ``timeout`` and ``scaledown_window`` are seconds (how long an idle container stays
    warm); ``min_containers`` keeps that many warm always (a warm pool: no cold start, billed idle);
    ``enable_memory_snapshot`` restores imports from a snapshot (the model still loads in
    ``@modal.enter``, after it: GPU state is not snapshotted); ``retries`` re-runs a failed input
    with exponential backoff (1 s, 2 s, … capped at 30 s)."""
    return {
        "gpu": settings.modal_gpu,
        "timeout": settings.modal_timeout_s,
        "max_containers": settings.modal_max_containers,
        "scaledown_window": settings.modal_scaledown_window_s,
        "min_containers": settings.modal_min_containers,
        "enable_memory_snapshot": settings.modal_memory_snapshot,
        "retries": modal.Retries(max_retries=settings.modal_retries, backoff_coefficient=2.0, initial_delay=1.0,
                                 max_delay=30.0),
    }


CONTAINER_SETTINGS = ("decode_workers", "decode_device", "model_precision", "model_channels_last", "model_compile",
                      "model_cuda_graphs", "cuda_batch_size")
"""Settings the container reads (its own ``Settings()``), copied from the deploying shell into the image."""


def container_env(settings: Settings) -> dict[str, str]:
    """``BOUNDARIES_*`` variables of :data:`CONTAINER_SETTINGS` that are set (None ones are left out)."""
    return {f"BOUNDARIES_{k.upper()}": str(v) for k in CONTAINER_SETTINGS
            if (v := getattr(settings, k)) is not None}


image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install(*IMAGE_PACKAGES)
    .env({"PYTHONUNBUFFERED": "1", **container_env(SETTINGS)})
    .add_local_python_source(*LOCAL_PACKAGES)
)
models_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
wasabi_secret = modal.Secret.from_name(WASABI_SECRET_NAME)

app = modal.App(APP_NAME, image=image)


@app.cls(volumes={MODELS_DIR: models_volume}, secrets=[wasabi_secret], **cls_options(SETTINGS))
class BoundaryInference:
    """One container = one loaded predictor, reused for every shard it receives.

    Parameters (one container pool per distinct value): ``model_version`` — empty for the built-in
    classical detector, else the checkpoint ``/models/checkpoints/{model_version}.pt``;
    ``batch_size`` — pairs per model batch (COMPAT.md §8 default 64).
    """

    model_version: str = modal.parameter(default="")
    batch_size: int = modal.parameter(default=64)

    @modal.enter()
    def load(self) -> None:
        """Load the predictor once per container.

        Raises:
            CheckpointError: the checkpoint is not on the volume (upload it with
                ``boundaries upload-checkpoint``) or does not load.
        """
        import structlog

        from boundaries.errors import CheckpointError
        from modal_gpu.inference_options import InferenceOptions
        from modal_gpu.predictor import load_predictor

        log = structlog.get_logger(__name__)
        mapped = map_wasabi_env(os.environ)
        checkpoint = checkpoint_path_for(self.model_version) if self.model_version else None
        if checkpoint is not None and not os.path.exists(checkpoint):
            models_volume.reload()  # a checkpoint uploaded after this container started
            if not os.path.exists(checkpoint):
                raise CheckpointError(f"checkpoint for model_version {self.model_version!r} not found at "
                                      f"{checkpoint} on volume {VOLUME_NAME!r}; run `boundaries upload-checkpoint`")
        self.predictor = load_predictor(checkpoint, batch_size=self.batch_size,
                                        model_version=self.model_version or None,
                                        options=InferenceOptions.from_settings(SETTINGS))
        log.info("container.loaded", model_version=self.predictor.model_version, checkpoint=checkpoint,
                 batch_size=self.batch_size, env_mapped=mapped)

    @modal.method()
    def run_boundary_inference_batch(self, request: dict) -> dict:
        """Run one shard (``ShardRequest`` as a JSON dict): read its chunks from the store in the request
        (Wasabi), write the shard output there, return ``ShardSummary.model_dump()`` — pairs, seconds,
        pairs/s, decode and model seconds, peak GPU memory in bytes.

        A boundaries ``PermanentError`` (bad input) is returned as ``{"permanent_error": …}`` so that
        ``modal.Retries`` does not retry it; transient errors raise (and are retried)."""
        from modal_gpu.shard import run_shard_remote

        return run_shard_remote(request, self.predictor, decode_workers=SETTINGS.decode_workers,
                                decode_device=SETTINGS.decode_device)


@app.function(gpu=SETTINGS.modal_gpu, timeout=300)
def test_inference() -> dict:
    """GPU name, total memory (bytes), CUDA availability and torch version of a container."""
    import torch

    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    return {"cuda_available": cuda, "gpu_name": props.name if props else None,
            "gpu_memory_bytes": int(props.total_memory) if props else 0,
            "gpu_count": torch.cuda.device_count() if cuda else 0, "torch_version": torch.__version__}


@app.local_entrypoint()
def main() -> None:
    print(test_inference.remote())
