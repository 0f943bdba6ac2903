"""How the users' model runs (precision, memory format, compilation, batch size), torch-free.

Built from :class:`config.settings.Settings` at the edge (:meth:`InferenceOptions.from_settings`) and
passed to :func:`modal_gpu.predictor.load_predictor`; the classical detector ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class InferenceOptions:
    """``precision``: autocast dtype (``auto``: fp16 on CUDA, bf16 on CPUs with native bf16 units,
    else fp32); ``channels_last``: conv memory format; ``compile``: ``torch.compile`` (CUDA only);
    ``cuda_graphs``: replay a captured full-batch forward (CUDA only); ``cuda_batch_size``: model
    samples per forward pass on CUDA (the request's ``batch_size`` applies on CPU)."""

    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    cuda_graphs: bool = False
    cuda_batch_size: int = 512

    @classmethod
    def from_settings(cls, settings) -> InferenceOptions:
        """From ``Settings``' ``model_precision``, ``model_channels_last``, ``model_compile``,
        ``model_cuda_graphs`` and ``cuda_batch_size``."""
        return cls(precision=settings.model_precision, channels_last=settings.model_channels_last,
                   compile=settings.model_compile, cuda_graphs=settings.model_cuda_graphs,
                   cuda_batch_size=settings.cuda_batch_size)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo); on
    other CPUs bf16 autocast is emulated and slower than fp32. False when the file is unreadable."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))
