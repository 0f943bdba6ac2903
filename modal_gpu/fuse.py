"""Fold the LoRA adapters and BatchNorm of a loaded model into a plain ResNet50-shaped network.

Inference-only rewrite of :class:`modal_gpu.model.ChannelFusionLoRA` (same ``forward`` signature):

* LoRA: ``lora_B(lora_A(x)) * alpha / rank`` is a 1x1 conv with the original stride and no padding;
  for ResNet50's convs (odd kernel k, padding (k-1)/2) it reads exactly the kernel's centre tap, so
  ``W[:, :, k//2, k//2] += (B @ A) * alpha / rank`` is exact (up to float rounding).
* BatchNorm (eval, running statistics) after a conv: ``W *= g / sqrt(v + eps)``,
  ``b = beta - mean * g / sqrt(v + eps)``; the BatchNorm becomes ``nn.Identity``.

Both folds are done in float64 and stored in the model's dtype. Dropout is dropped (eval semantics).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from modal_gpu.model import ChannelFusionLoRA, LoRAConv2d


def fold_lora(layer: LoRAConv2d) -> nn.Conv2d:
    """A plain ``Conv2d`` equal to ``layer`` (original conv + LoRA in its centre tap).

    Raises:
        ValueError: the original conv's padding does not centre its kernel (the fold would be wrong).
    """
    conv = layer.original_layer
    kh, kw = conv.kernel_size
    if kh % 2 == 0 or kw % 2 == 0 or conv.padding != ((kh - 1) // 2, (kw - 1) // 2) or conv.dilation != (1, 1):
        raise ValueError(f"fold_lora: kernel {conv.kernel_size} padding {conv.padding} is not centred")
    delta = (layer.lora_B.weight.double().flatten(1) @ layer.lora_A.weight.double().flatten(1)) * layer.scaling
    weight = conv.weight.double().clone()
    weight[:, :, kh // 2, kw // 2] += delta
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` (applied right after ``conv``) into ``conv``'s weight and bias, in place."""
    inv = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    with torch.no_grad():
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(inv)
        conv.weight.copy_(conv.weight.double() * inv.view(-1, 1, 1, 1))
        conv.bias.copy_((bias - bn.running_mean.double()) * inv + bn.bias.double())


def _fold_children(module: nn.Module) -> None:
    """Replace LoRA convs by folded convs; fold every BatchNorm that directly follows a conv."""
    prev_name, prev = None, None
    for name, child in list(module.named_children()):
        if isinstance(child, LoRAConv2d):
            child = fold_lora(child)
            setattr(module, name, child)
        elif isinstance(child, nn.BatchNorm2d):
            if not isinstance(prev, nn.Conv2d):
                raise ValueError(f"fuse: BatchNorm {name!r} does not follow a conv (after {prev_name!r})")
            fold_bn(prev, child)
            setattr(module, name, nn.Identity())
            child = None
        else:
            _fold_children(child)
        prev_name, prev = name, child


def fuse_model(model: ChannelFusionLoRA) -> ChannelFusionLoRA:
    """An eval-mode copy of ``model`` whose backbone is a plain conv(+bias)/ReLU ResNet50 (no LoRA, no BN).

    ResNet50's bottlenecks name their layers conv1, bn1, conv2, bn2, conv3, bn3 and downsample =
    Sequential(conv, bn), so each BatchNorm directly follows its conv in module order. ``model`` is
    not modified.
    """
    fused = copy.deepcopy(model).eval()
    _fold_children(fused.backbone)
    return fused
