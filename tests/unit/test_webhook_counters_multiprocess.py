"""Webhook counters of several producer processes on one host are summed by every process's /metrics
when PROMETHEUS_MULTIPROC_DIR is set (prometheus_client's multiprocess mode, producer/metrics.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

_COUNT_AND_RENDER = """
import sys
from producer.metrics import ProducerMetrics
m = ProducerMetrics()
for _ in range(int(sys.argv[1])):
    m.received.inc()
m.rejected.labels("unauthorized").inc()
m.enqueue_latency.observe(0.003)
sys.stdout.write(m.render().decode())
"""


def _process(n: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _COUNT_AND_RENDER, str(n)], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(out) for s in fam.samples}


def test_each_process_reports_the_sum_of_all_processes_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    _process(2, env)
    third = _process(3, env)  # the first process has exited; its counts stay in the directory
    assert third[("boundaries_webhooks_received_total", ())] == 5
    assert third[("boundaries_webhooks_rejected_total", (("reason", "unauthorized"),))] == 2
    assert third[("boundaries_webhook_enqueue_seconds_count", ())] == 2


def test_without_the_directory_each_process_reports_only_its_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"PYTHONPATH": str(REPO)}
    _process(2, env)
    assert _process(3, env)[("boundaries_webhooks_received_total", ())] == 3
