"""channel_fusion_lora_spatial: state-dict keys/shapes of COMPAT.md §4, offline build, strict reload."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from modal_gpu.checkpoint import save_checkpoint  # noqa: E402
from modal_gpu.model import build_model, randomize_for_tests_  # noqa: E402

pytestmark = pytest.mark.gpu

RESNET_TO_BACKBONE = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def expected_keys() -> dict[str, tuple[int, ...]]:
    """Keys and shapes derived from torchvision's plain resnet50 + COMPAT.md §4's naming rules."""
    keys: dict[str, tuple[int, ...]] = {"channel_fusion.weight": (3, 9, 1, 1)}
    for name, t in torchvision.models.resnet50(weights=None).state_dict().items():
        head, _, rest = name.partition(".")
        if head == "fc":
            continue
        base = f"backbone.{RESNET_TO_BACKBONE[head]}.{rest}"
        if t.ndim == 4:  # every conv weight is wrapped by LoRA, rank 16
            stem = base[: -len(".weight")]
            keys[f"{stem}.original_layer.weight"] = tuple(t.shape)
            keys[f"{stem}.lora_A.weight"] = (16, t.shape[1], 1, 1)
            keys[f"{stem}.lora_B.weight"] = (t.shape[0], 16, 1, 1)
        else:
            keys[base] = tuple(t.shape)
    for prefix, layers in (("spatial_proj", {0: (128, 6), 3: (128, 128)}),
                           ("fusion_mlp", {0: (1024, 2176), 3: (512, 1024), 6: (5, 512)})):
        for i, shape in layers.items():
            keys[f"{prefix}.{i}.weight"] = shape
            keys[f"{prefix}.{i}.bias"] = (shape[0],)
    return keys


def test_state_dict_keys_and_shapes_match_compat():
    # Given a fresh model
    sd = build_model().state_dict()
    # Then every key and shape is the users' one, and the named examples of COMPAT.md §4 exist
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_keys()
    assert tuple(sd["backbone.0.original_layer.weight"].shape) == (64, 3, 7, 7)
    assert tuple(sd["backbone.0.lora_A.weight"].shape) == (16, 3, 1, 1)
    assert tuple(sd["backbone.1.running_mean"].shape) == (64,)
    assert tuple(sd["backbone.4.0.conv1.original_layer.weight"].shape) == (64, 64, 1, 1)
    assert tuple(sd["backbone.4.0.downsample.0.original_layer.weight"].shape) == (256, 64, 1, 1)
    assert tuple(sd["backbone.5.0.conv2.lora_B.weight"].shape) == (128, 16, 1, 1)  # strided 3x3
    assert len(sd) == 435


def test_parameter_count_is_27_07_million():
    n = sum(p.numel() for p in build_model().parameters())
    assert n == 27_067_536  # ≈ 27.07 M (COMPAT.md §4)


def test_build_never_downloads_weights(tmp_path, monkeypatch):
    # Given an empty torch hub cache and pretrained=True in the model config (as users' checkpoints say)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # When the model is built
    build_model({"pretrained": True})
    # Then nothing was fetched into the cache
    assert list(tmp_path.rglob("*")) == []


def test_forward_shape_and_strided_lora_shapes_line_up():
    model = randomize_for_tests_(build_model(), seed=1)
    x = [torch.randn(2, 3, 48, 480) for _ in range(3)]
    with torch.inference_mode():
        logits = model(*x, torch.rand(2, 6))
    assert logits.shape == (2, 5) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


FRESH_PROCESS = r"""
import sys, torch
torch.set_num_threads(1)
from modal_gpu.model import build_model
ckpt, io = sys.argv[1], sys.argv[2]
model = build_model()
model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model_state_dict"], strict=True)
data = torch.load(io)
with torch.inference_mode():
    out = model(*data["inputs"])
sys.exit(0 if torch.equal(out, data["outputs"]) else 3)
"""


def test_saved_state_dict_reloads_strict_in_fresh_process_bit_for_bit(tmp_path):
    # Given a randomized model saved in the users' checkpoint format, and its outputs on fixed inputs
    torch.set_num_threads(1)
    try:
        model = randomize_for_tests_(build_model(), seed=2)
        save_checkpoint(model, tmp_path / "m.pt", wandb_run_id="abcd1234")
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(2, 3, 48, 480, generator=gen) for _ in range(3)] + [torch.rand(2, 6, generator=gen)]
        with torch.inference_mode():
            outputs = model(*inputs)
    finally:
        torch.set_num_threads(2)
    torch.save({"inputs": inputs, "outputs": outputs}, tmp_path / "io.pt")
    # When a fresh interpreter loads it strict=True into a fresh model and runs the same inputs
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "m.pt"), str(tmp_path / "io.pt")],
                          capture_output=True, text=True, timeout=120)
    # Then the outputs are bit-for-bit equal
    assert proc.returncode == 0, proc.stderr[-2000:]
