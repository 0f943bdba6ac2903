"""A worker killed with SIGKILL (OOM killer, kill -9) leaves no local-runner child behind (issue 12,
fault 2): its shard processes are gone within 30 s, whether they were running a shard or waiting."""

from __future__ import annotations

import os
import signal
import time
import uuid
from contextlib import suppress

from tests.conftest import REPO
from tests.integration.faults import counters, set_faults, synthetic_video

SLOW = "tests.integration.faults:slow_local"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
    return out


def test_kill_9_of_a_worker_mid_shard_leaves_no_runner_child(make_stack, monkeypatch, redis_url, db_schema):
    # given: a worker with two local-runner children, one of them 60 s into a slow shard, one idle
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=60.0)
    s = make_stack(runner_factory=SLOW, local_runner_workers=2)
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(s.store, s.settings, tenant, vid, frames=12)  # 11 pairs: 2 shards of 10 pairs
    s.registry.upsert_video(vid, tenant, 1)
    worker = s.start_worker()
    s.post(s.activate(tenant, vid, res))
    deadline = time.monotonic() + 60
    while not counters(cfg).lrange(f"{cfg['ns']}:pids", 0, -1):
        assert time.monotonic() < deadline, "no shard started within 60 s"
        time.sleep(0.1)
    children = _children(worker.pid)
    assert len(children) >= 2, children
    try:
        # when: the worker's main process is killed with SIGKILL (no clean-up runs)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = time.monotonic()

        # then: every runner child is gone within 30 s
        while any(_alive(p) for p in children) and time.monotonic() - killed_at < 30:
            time.sleep(0.2)
        assert not [p for p in children if _alive(p)], "runner children outlived their worker by 30 s"
    finally:
        for p in children:
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
