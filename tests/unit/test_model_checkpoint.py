"""Users' checkpoints: model_version/sha256, strict loading, clear CheckpointError (COMPAT.md §4)."""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")

from boundaries.errors import CheckpointError, PermanentError  # noqa: E402
from modal_gpu.checkpoint import load_checkpoint, model_version_of, save_checkpoint  # noqa: E402
from modal_gpu.model import build_model, randomize_for_tests_  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    model = randomize_for_tests_(build_model(), seed=3)
    version, sha = save_checkpoint(model, path, wandb_run_id="mrn0fkfd", metrics={"val_acc": 0.9}, epoch=7)
    return path, model, version, sha


def test_model_version_is_run_id_and_sha_prefix(saved):
    path, _, version, sha = saved
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert version == f"mrn0fkfd_{sha[:8]}"
    assert model_version_of(path) == (version, sha)


def test_load_restores_every_tensor_and_info(saved):
    path, model, version, sha = saved
    loaded, info = load_checkpoint(path)
    assert (info.model_version, info.sha256, info.wandb_run_id, info.epoch) == (version, sha, "mrn0fkfd", 7)
    assert info.transform_strategy == "mirror_tile" and info.metrics == {"val_acc": 0.9}
    want = model.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not loaded.training


def test_explicit_model_version_overrides(saved):
    path, *_ = saved
    _, info = load_checkpoint(path, model_version="custom_00000000")
    assert info.model_version == "custom_00000000"


def test_truncated_file_is_a_checkpoint_error(saved, tmp_path):
    path, *_ = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_checkpoint(bad)
    assert isinstance(e.value, PermanentError) and str(bad) in str(e.value)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        model_version_of(tmp_path / "nope.pt")


def test_wrong_architecture_is_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model_state_dict": {}, "config": {"architecture_name": "triple_backbone_resnet50"},
                "wandb_run_id": "x"}, path)
    with pytest.raises(CheckpointError, match="triple_backbone_resnet50"):
        load_checkpoint(path)


def test_missing_keys_are_named(tmp_path):
    # Given a checkpoint whose state dict lacks the whole backbone
    sd = {k: v for k, v in build_model().state_dict().items() if not k.startswith("backbone.")}
    path = tmp_path / "partial.pt"
    torch.save({"model_state_dict": sd, "config": {"architecture_name": "channel_fusion_lora_spatial"},
                "wandb_run_id": "x"}, path)
    # Then loading names the missing keys
    with pytest.raises(CheckpointError, match=r"Missing key.*backbone\.0\.original_layer\.weight"):
        load_checkpoint(path)


def test_wrong_shape_is_a_checkpoint_error(tmp_path):
    sd = build_model().state_dict()
    sd["fusion_mlp.6.weight"] = torch.zeros(4, 512)
    sd["fusion_mlp.6.bias"] = torch.zeros(4)
    path = tmp_path / "shape.pt"
    torch.save({"model_state_dict": sd, "config": {"architecture_name": "channel_fusion_lora_spatial"}}, path)
    with pytest.raises(CheckpointError, match="fusion_mlp.6.weight"):
        load_checkpoint(path, model_version="v_1")


def test_no_run_id_needs_explicit_version(tmp_path):
    path = tmp_path / "norun.pt"
    torch.save({"model_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="wandb_run_id"):
        model_version_of(path)


def test_not_a_dict_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="model_state_dict"):
        load_checkpoint(path)
