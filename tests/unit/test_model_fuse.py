"""LoRA + BatchNorm folding: the fused network computes the same function (stated tolerances)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from modal_gpu.fuse import fold_lora, fuse_model  # noqa: E402
from modal_gpu.model import LoRAConv2d, build_model, randomize_for_tests_  # noqa: E402

pytestmark = pytest.mark.gpu

LOGIT_TOL = 1e-4
PROB_TOL = 1e-5


@pytest.mark.parametrize(("k", "stride", "size"), [(7, 2, (23, 31)), (3, 2, (12, 17)), (3, 1, (9, 10)),
                                                   (1, 2, (11, 16)), (1, 1, (5, 6))])
def test_fold_lora_equals_adapter(k, stride, size):
    # Given a LoRA conv with non-zero B and odd/even input sizes
    torch.manual_seed(k * 10 + stride)
    layer = LoRAConv2d(nn.Conv2d(8, 12, k, stride, (k - 1) // 2, bias=False))
    with torch.no_grad():
        layer.lora_B.weight.normal_(0, 0.1)
    x = torch.randn(2, 8, *size)
    # When it is folded into the centre tap
    folded = fold_lora(layer)
    # Then the plain conv computes the same output
    with torch.inference_mode():
        want, got = layer(x), folded(x)
    assert want.shape == got.shape
    assert (want - got).abs().max().item() < 1e-5


def test_fold_lora_rejects_uncentred_padding():
    with pytest.raises(ValueError, match="padding"):
        fold_lora(LoRAConv2d(nn.Conv2d(4, 4, 3, 1, 0)))


def test_fused_model_matches_unfused():
    # Given a model with non-trivial LoRA weights and BatchNorm statistics
    model = randomize_for_tests_(build_model(), seed=4)
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(3, 3, 48, 480, generator=gen) for _ in range(3)] + [torch.rand(3, 6, generator=gen)]
    # When it is fused
    fused = fuse_model(model)
    with torch.inference_mode():
        want, got = model(*inputs), fused(*inputs)
    # Then logits agree within 1e-4 and probabilities within 1e-5; no LoRA or BatchNorm is left
    assert (want - got).abs().max().item() < LOGIT_TOL
    assert (want.softmax(1) - got.softmax(1)).abs().max().item() < PROB_TOL
    assert not any(isinstance(m, (LoRAConv2d, nn.BatchNorm2d)) for m in fused.modules())
    assert any(isinstance(m, LoRAConv2d) for m in model.modules())  # original untouched
