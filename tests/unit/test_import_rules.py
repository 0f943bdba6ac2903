"""ARCHITECTURE.md import rules, checked in fresh interpreters: producer and worker never load torch;
producer never loads worker or modal_gpu; the domain package never loads the service packages."""

import json
import subprocess
import sys

import pytest


def _loaded(modules: list[str]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _top(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


@pytest.mark.parametrize("modules", [
    ["producer.app", "producer.reconciler", "boundaries.enqueue"],
])
def test_producer_loads_neither_torch_nor_worker_nor_modal_gpu(modules):
    top = _top(_loaded(modules))

    assert not top & {"torch", "torchvision", "worker", "modal_gpu"}, top & {"torch", "worker", "modal_gpu"}


@pytest.mark.parametrize("modules", [
    ["worker.cli", "worker.cli_ops", "worker.main_job", "worker.tasks", "worker.pipeline", "worker.runners.local",
     "worker.runners.inline", "worker.deps"],
])
def test_worker_never_loads_torch(modules):
    top = _top(_loaded(modules))

    assert "torch" not in top and "torchvision" not in top


def test_domain_package_loads_no_service_package():
    mods = _loaded(["boundaries.events", "boundaries.enqueue", "boundaries.registry.registry",
                    "boundaries.frames.reader", "boundaries.frames.writer", "boundaries.ingest",
                    "boundaries.results_db", "boundaries.shards", "boundaries.evaluation"])

    assert not _top(mods) & {"producer", "worker", "modal_gpu", "torch"}


def test_classical_shard_path_loads_no_torch():
    top = _top(_loaded(["modal_gpu.shard", "modal_gpu.detector"]))

    assert "torch" not in top
