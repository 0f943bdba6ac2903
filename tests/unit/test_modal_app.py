"""The Modal app's configuration (imported without credentials) and one shard run in-process via
``.local()`` (COMPAT.md §8)."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from boundaries.frames.layoutdb import build_layout_db
from boundaries.frames.writer import ChunkWriter
from boundaries.layout_config import LayoutConfig
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.shards import ShardRequest, decode_output, shard_id
from config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TINY_W, TINY_H = 16, 8


def write_tiny_video(store, prefix: str, layout_key: str, frames: int = 40) -> None:
    """``frames`` synthetic 16x8 RGB crops (a white 'caption' block that changes every 13 frames on a
    dark background) as VP9 chunks under ``prefix``, plus a layout.db at ``layout_key``."""
    from PIL import Image

    with ChunkWriter(store, prefix, TINY_W, TINY_H) as w:
        for i in range(frames):
            img = np.full((TINY_H, TINY_W, 3), 20, np.uint8)
            x = 2 + (i // 13) % 3 * 4
            img[2:6, x:x + 5] = 235
            w.write(img)
    png = io.BytesIO()
    Image.fromarray(np.zeros((TINY_H, TINY_W, 3), np.uint8)).save(png, format="PNG")
    cfg = LayoutConfig(frame_width=TINY_W, frame_height=32, crop_left=0, crop_top=24, crop_right=TINY_W,
                       crop_bottom=32, anchor_type="center", ocr_visualization_png=png.getvalue())
    store.put_bytes(layout_key, build_layout_db(cfg))


def tiny_request(store, prefix: str, layout_key: str, first: int, end: int, **kw) -> ShardRequest:
    fields = dict(shard_id=shard_id(first, end), tenant_id="t", video_id="v", cropped_frames_version=1,
                  model_version=CLASSICAL_MODEL_VERSION, first_pair=first, end_pair=end, frames_prefix=prefix,
                  layout_db_key=layout_key, output_key=f"{prefix}out/{shard_id(first, end)}.npz",
                  store=store.describe())
    fields.update(kw)
    return ShardRequest(**fields)


def test_app_configuration_matches_settings_without_credentials():
    # Given a fresh interpreter with no Modal credentials and some BOUNDARIES_MODAL_* overrides
    code = ("import sys, modal_gpu.app as a; i = a.BoundaryInference._get_class_service_function().info(); "
            "print(a.app.name, i.gpus[0][0], i.timeout, i.max_retries, sorted(i.volumes), "
            "i.volumes['/models'].name, i.secrets, i.method_names, a.test_inference.info().gpus[0][0], "
            "a.cls_options(a.SETTINGS)['max_containers'], 'torch' in sys.modules, sep='|')")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": "",
           "BOUNDARIES_MODAL_GPU": "L4", "BOUNDARIES_MODAL_TIMEOUT_S": "1234", "BOUNDARIES_MODAL_RETRIES": "3",
           "BOUNDARIES_MODAL_MAX_CONTAINERS": "7"}
    # When the app module is imported
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    # Then its configuration is what settings and COMPAT.md §8 say, and torch was not imported
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().split("|") == [
        "boundary-inference", "L4", "1234", "3", "['/models']", "boundary-models",
        "[\"modal.Secret.from_name('wasabi-credentials')\"]", "['run_boundary_inference_batch']", "L4", "7", "False"]


def test_cls_options_come_from_settings():
    from modal_gpu.app import cls_options

    # Given non-default settings
    s = Settings(modal_gpu="H100", modal_timeout_s=1234, modal_max_containers=9, modal_scaledown_window_s=77,
                 modal_retries=4)
    # When the class options are derived
    opts = cls_options(s)
    # Then every resource option follows them
    assert (opts["gpu"], opts["timeout"], opts["max_containers"], opts["scaledown_window"]) == ("H100", 1234, 9, 77)
    assert opts["retries"].max_retries == 4


def test_image_pins_match_pyproject():
    from modal_gpu.app import IMAGE_PACKAGES, LOCAL_PACKAGES

    # Given the pins of pyproject.toml (core + gpu extra)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {p.split("==")[0].split("[")[0]: p.split("==")[1]
            for p in project["dependencies"] + project["optional-dependencies"]["gpu"]}
    # Then every image package is pinned to exactly the same version
    for spec in IMAGE_PACKAGES:
        name, version = spec.split("==")
        assert pins.get(name) == version, f"{spec} vs pyproject {name}=={pins.get(name)}"
    assert {"torch", "torchvision"} <= {p.split("==")[0] for p in IMAGE_PACKAGES}
    assert set(LOCAL_PACKAGES) == {"config", "boundaries", "modal_gpu"}


def test_map_wasabi_env_fills_only_unset_names():
    from modal_gpu.app import map_wasabi_env

    env = {"WASABI_ACCESS_KEY": "AK", "WASABI_SECRET_KEY": "SK", "WASABI_ENDPOINT": "https://e",
           "BOUNDARIES_S3_REGION": "eu-1", "WASABI_REGION": "us-east-1"}
    assert sorted(map_wasabi_env(env)) == ["BOUNDARIES_S3_ACCESS_KEY_ID", "BOUNDARIES_S3_ENDPOINT_URL",
                                           "BOUNDARIES_S3_SECRET_ACCESS_KEY"]
    assert env["BOUNDARIES_S3_ACCESS_KEY_ID"] == "AK" and env["BOUNDARIES_S3_REGION"] == "eu-1"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_checkpoint_path_rejects_unsafe_model_versions(bad):
    from modal_gpu.app import checkpoint_path_for

    assert checkpoint_path_for("mrn0fkfd_a4b1a61c") == "/models/checkpoints/mrn0fkfd_a4b1a61c.pt"
    with pytest.raises(ValueError, match="model_version"):
        checkpoint_path_for(bad)


def test_method_runs_a_shard_locally(tmp_path):
    from boundaries.storage.local import LocalStore
    from modal_gpu.app import BoundaryInference

    # Given a tiny video in a local store and a request for pairs [5, 30)
    store = LocalStore(tmp_path)
    write_tiny_video(store, "t/v/cropped_frames_v1/", "t/v/layout.db")
    req = tiny_request(store, "t/v/cropped_frames_v1/", "t/v/layout.db", 5, 30)
    # When the Modal method runs in-process (enter + method, the documented .local() path)
    with pytest.warns(UserWarning, match="Volume"):  # Modal: locally, the volume is not mounted
        summary = BoundaryInference().run_boundary_inference_batch.local(req.model_dump(mode="json"))
    # Then it returns the small summary and wrote a valid output for exactly those pairs
    assert summary["shard_id"] == req.shard_id and summary["pairs"] == 25
    assert summary["seconds"] > 0 and summary["model_s"] >= 0 and summary["decode_s"] >= 0
    out = decode_output(store.get_bytes(req.output_key), 5, 30, CLASSICAL_MODEL_VERSION)
    assert out["forward"].shape == (25, 5)
    np.testing.assert_allclose(out["forward"].sum(axis=1), 1.0, atol=1e-4)


# --- upload-checkpoint ----------------------------------------------------------------------------

class FakeVolume:
    """Stands in for ``modal.Volume`` (listdir, batch_upload(force) / put_file), holding files in a dict."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.uploads: list[tuple[str, bool]] = []

    def listdir(self, path: str):
        from modal.exception import NotFoundError
        from modal.volume import FileEntry, FileEntryType

        d = path.strip("/") + "/"
        entries = [FileEntry(path=k.lstrip("/"), type=FileEntryType.FILE, mtime=0, size=len(v))
                   for k, v in self.files.items() if k.lstrip("/").startswith(d)]
        if not entries:
            raise NotFoundError(f"No such file or directory: {path}")
        return entries

    def batch_upload(self, force: bool = False):
        vol = self

        class _Batch:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def put_file(self, local, remote):
                if remote in vol.files and not force:
                    raise FileExistsError(remote)
                vol.files[remote] = Path(local).read_bytes()
                vol.uploads.append((remote, force))

        return _Batch()


def _checkpoint(path: Path, run_id: str | None = "mrn0fkfd", weight: float = 1.0) -> Path:
    import torch

    torch.save({"model_state_dict": {"w": torch.full((2,), weight)}, "wandb_run_id": run_id}, path)
    return path


def test_upload_puts_checkpoint_under_its_model_version_and_refuses_overwrite(tmp_path):
    import hashlib

    from boundaries_cli.upload_checkpoint import upload_checkpoint

    # Given a checkpoint and an empty volume
    ckpt = _checkpoint(tmp_path / "best.pt")
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    vol = FakeVolume()
    # When it is uploaded
    remote = upload_checkpoint(ckpt, volume=vol)
    # Then it lands at /checkpoints/{wandb_run_id}_{sha256[:8]}.pt with the same bytes
    assert remote == f"/checkpoints/mrn0fkfd_{sha[:8]}.pt"
    assert vol.files[remote] == ckpt.read_bytes() and vol.uploads == [(remote, False)]
    # And a second upload without force is refused, leaving the volume untouched
    with pytest.raises(FileExistsError, match="--force"):
        upload_checkpoint(ckpt, volume=vol)
    assert vol.uploads == [(remote, False)]
    # And with force it is overwritten
    assert upload_checkpoint(ckpt, force=True, volume=vol) == remote
    assert vol.uploads == [(remote, False), (remote, True)]


def test_upload_rejects_a_checkpoint_without_run_id(tmp_path):
    from boundaries.errors import CheckpointError
    from boundaries_cli.upload_checkpoint import upload_checkpoint

    vol = FakeVolume()
    with pytest.raises(CheckpointError, match="wandb_run_id"):
        upload_checkpoint(_checkpoint(tmp_path / "x.pt", run_id=None), volume=vol)
    with pytest.raises(CheckpointError, match="does not exist"):
        upload_checkpoint(tmp_path / "absent.pt", volume=vol)
    assert vol.files == {}


def test_cli_has_upload_command():
    from boundaries_cli.main import build_parser
    from boundaries_cli.upload_checkpoint import cmd_upload

    args = build_parser().parse_args(["upload-checkpoint", "m.pt", "--force"])
    assert (args.func, args.checkpoint, args.force) == (cmd_upload, "m.pt", True)
    assert build_parser().parse_args(["upload-checkpoint", "m.pt"]).force is False
