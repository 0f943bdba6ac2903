"""The users' boundary model, ``channel_fusion_lora_spatial`` (COMPAT.md §4).

Structure and state-dict key names reproduce the users' training code so their checkpoints load with
``strict=True``::

    channel_fusion   Conv2d(9 -> 3, 1x1, no bias) over cat([ocr_viz, frame1, frame2], dim=1)
    backbone         nn.Sequential(resnet50 children without fc): 0 conv1, 1 bn1, 2 relu, 3 maxpool,
                     4..7 layer1..layer4, 8 avgpool; every Conv2d wrapped in :class:`LoRAConv2d`
    spatial_proj     Linear(6,128), ReLU, Dropout, Linear(128,128)
    fusion_mlp       Linear(2176,1024), ReLU, Dropout, Linear(1024,512), ReLU, Dropout, Linear(512,5)

About 27.07 M parameters. Pretrained weights are never downloaded (``weights=None``): a checkpoint's
state dict overwrites every tensor anyway.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

ARCHITECTURE_NAME = "channel_fusion_lora_spatial"
INPUT_HEIGHT = 48
"""Model input height in pixels."""
INPUT_WIDTH = 480
"""Model input width in pixels."""
SPATIAL_DIM = 6
NUM_CLASSES = 5
BACKBONE_FEATURES = 2048
LORA_RANK = 16
LORA_ALPHA = 16.0


class LoRAConv2d(nn.Module):
    """``original_layer(x) + lora_B(lora_A(x)) * alpha / rank`` around a frozen ``Conv2d``.

    ``lora_A``: 1x1 conv ``in -> rank`` (stride 1, no bias); ``lora_B``: 1x1 conv ``rank -> out`` with
    the original conv's stride, no padding, no bias. For the centred, odd kernels of ResNet50 (padding
    ``(k - 1) / 2``) the 1x1 path samples exactly the original kernel's centre tap, so the adapter can be
    folded into that tap (:mod:`modal_gpu.fuse`).
    """

    def __init__(self, original_layer: nn.Conv2d, rank: int = LORA_RANK, alpha: float = LORA_ALPHA):
        super().__init__()
        if original_layer.groups != 1:
            raise ValueError(f"LoRAConv2d: grouped conv (groups={original_layer.groups}) is not supported")
        self.original_layer = original_layer
        self.original_layer.requires_grad_(False)
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Conv2d(original_layer.in_channels, rank, kernel_size=1, bias=False)
        self.lora_B = nn.Conv2d(rank, original_layer.out_channels, kernel_size=1,
                                stride=original_layer.stride, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=0.01)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.original_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling


class LoRALinear(nn.Module):
    """``original_layer(x) + (x @ lora_A.T) @ lora_B.T * alpha / rank``; ``lora_A (rank, in)``, ``lora_B (out, rank)``.

    Only ResNet50's ``fc`` is a Linear, and it is dropped from the backbone; kept for completeness.
    """

    def __init__(self, original_layer: nn.Linear, rank: int = LORA_RANK, alpha: float = LORA_ALPHA):
        super().__init__()
        self.original_layer = original_layer
        self.original_layer.requires_grad_(False)
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.randn(rank, original_layer.in_features) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(original_layer.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.original_layer(x) + (x @ self.lora_A.T) @ self.lora_B.T * self.scaling


def wrap_with_lora(module: nn.Module, rank: int = LORA_RANK, alpha: float = LORA_ALPHA) -> nn.Module:
    """Replace, in place and recursively, every ``Conv2d``/``Linear`` child of ``module`` by its LoRA wrapper."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, LoRAConv2d(child, rank, alpha))
        elif isinstance(child, nn.Linear):
            setattr(module, name, LoRALinear(child, rank, alpha))
        else:
            wrap_with_lora(child, rank, alpha)
    return module


class ChannelFusionLoRA(nn.Module):
    """``forward(ocr_viz, frame1, frame2, spatial) -> logits (B, 5)`` (COMPAT.md §4).

    Images ``float32 (B, 3, 48, 480)`` ImageNet-normalized; ``spatial float32 (B, 6)``
    (:func:`modal_gpu.spatial.spatial_features`). Logits in :data:`boundaries.labels.LABELS` order.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, spatial_dim: int = SPATIAL_DIM,
                 fusion_hidden_dim: int = 1024, dropout: float = 0.3, lora_rank: int = LORA_RANK,
                 lora_alpha: float = LORA_ALPHA):
        super().__init__()
        self.channel_fusion = nn.Conv2d(9, 3, kernel_size=1, bias=False)
        nn.init.constant_(self.channel_fusion.weight, 1.0 / 3.0)
        resnet = wrap_with_lora(torchvision.models.resnet50(weights=None), lora_rank, lora_alpha)
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.spatial_proj = nn.Sequential(
            nn.Linear(spatial_dim, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 128))
        self.fusion_mlp = nn.Sequential(
            nn.Linear(BACKBONE_FEATURES + 128, fusion_hidden_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(fusion_hidden_dim, fusion_hidden_dim // 2), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(fusion_hidden_dim // 2, num_classes))

    def forward(self, ocr_viz: torch.Tensor, frame1: torch.Tensor, frame2: torch.Tensor,
                spatial: torch.Tensor) -> torch.Tensor:
        fused = self.channel_fusion(torch.cat([ocr_viz, frame1, frame2], dim=1))
        features = torch.flatten(self.backbone(fused), 1)
        return self.fusion_mlp(torch.cat([features, self.spatial_proj(spatial)], dim=1))


def build_model(model_config: dict | None = None) -> ChannelFusionLoRA:
    """A fresh ``channel_fusion_lora_spatial`` in eval mode, random weights (never downloads any).

    ``model_config``: the checkpoint's ``config["model_config"]``; ``pretrained`` is ignored (the state
    dict overwrites the weights); ``num_classes``/``lora_rank``/``lora_alpha``/``dropout``/
    ``fusion_hidden_dim``/``spatial_dim`` are honoured; other keys are ignored.
    """
    cfg = dict(model_config or {})
    kwargs = {k: cfg[k] for k in ("num_classes", "spatial_dim", "fusion_hidden_dim", "dropout",
                                  "lora_rank", "lora_alpha") if k in cfg}
    return ChannelFusionLoRA(**kwargs).eval()


def randomize_for_tests_(model: ChannelFusionLoRA, seed: int = 0) -> ChannelFusionLoRA:
    """Give ``model`` non-trivial LoRA ``B`` weights, BatchNorm statistics and channel fusion, in place.

    For tests and benchmarks: a fresh model has ``lora_B = 0``, identity BatchNorms and a channel
    fusion that averages the three images (symmetric in frame1/frame2), which would let a wrong fold
    or swapped directions pass unnoticed.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        model.channel_fusion.weight.copy_(torch.randn(model.channel_fusion.weight.shape, generator=gen) * 0.5)
        for mod in model.modules():
            if isinstance(mod, LoRAConv2d):
                mod.lora_B.weight.copy_(torch.randn(mod.lora_B.weight.shape, generator=gen) * 0.02)
            elif isinstance(mod, nn.BatchNorm2d):
                uniform(mod.running_mean, -0.2, 0.2)
                uniform(mod.running_var, 0.5, 1.5)
                uniform(mod.weight, 0.5, 1.2)
                uniform(mod.bias, -0.2, 0.2)
    return model
