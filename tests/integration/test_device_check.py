"""scripts/device_check runs on the CPU with small sizes and prints its one table (it never rots)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]


def test_device_check_small_cpu_run_prints_the_table(shared_dir):
    res = subprocess.run([str(ROOT / "scripts/device_check"), "--cpu", "--small"], capture_output=True, text=True,
                         timeout=600, env={"PYTHON": sys.executable, "BOUNDARIES_SHARED_DIR": str(shared_dir),
                                           "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for want in ("device_check (small, cpu)", "preprocessing cpu vs PIL reference", "model bf16 on cpu",
                 "decode cuda (NVDEC) vs cpu", "batch 8", "shard path", "real: popeye_burn10", "DEVICE_CHECK OK"):
        assert want in out, f"{want!r} missing from:\n{out}"
