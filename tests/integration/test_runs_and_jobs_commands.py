"""``boundaries runs`` and ``boundaries jobs`` (issue 14, "Finding things out"), on real Redis, PostgreSQL
and moto: a job run by a real worker is found by ``jobs list``/``show`` and its run by ``runs
list``/``show``/``download``, whose caption segments are those of the published results database; the
lists filter and say when ``--limit`` cut them; JSON when stdout is not a terminal, a table with
``--table``; ``dlq list``/``show`` follow the same rule."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import uuid
from datetime import UTC, datetime

import pytest

from boundaries.events import JobEvent
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.registry.registry import run_id_for
from boundaries.results_db import read_results_db
from boundaries.segments import segments_from_labels
from boundaries_cli.embedded import child_env
from config.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration

CLIP = "rapidvideocr/1.mp4"  # 127 frames at 10 fps: a real job in seconds
CLIP_CROP = (0.0, 0.72, 1.0, 0.98)


def cli(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "boundaries_cli.main", *args], env=child_env(settings), cwd=REPO,
                         capture_output=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr.decode()
    return out


def as_json(out: subprocess.CompletedProcess):
    return json.loads(out.stdout)


def test_a_real_job_and_its_run_are_found_shown_and_downloaded(make_stack, real_data, tmp_path):
    s = make_stack()
    tenant, vid, res = s.ingest(real_data / CLIP, crop=CLIP_CROP)
    payload = s.activate(tenant, vid, res)
    s.start_worker()
    assert s.post(payload).status_code == 202
    job = s.wait_job(vid, timeout_s=120)
    assert job["status"] == "completed", job["error_message"]
    run = s.registry.get_run(vid, 1, CLASSICAL_MODEL_VERSION)
    published = s.store.get_bytes(run["wasabi_storage_key"])
    want_segments = segments_from_labels(read_results_db(published)["forward_labels"])

    jobs = as_json(cli(s.settings, "jobs", "list", "--video-id", vid))
    shown = as_json(cli(s.settings, "jobs", "show", str(job["id"])))
    runs = as_json(cli(s.settings, "runs", "list", "--tenant-id", tenant))
    by_run_id = as_json(cli(s.settings, "runs", "show", run["run_id"]))
    by_row_id = as_json(cli(s.settings, "runs", "show", str(run["id"])))
    table = cli(s.settings, "runs", "show", run["run_id"], "--table").stdout.decode()
    target = tmp_path / "out" / "results.db"
    download = cli(s.settings, "runs", "download", run["run_id"], "-o", str(target))
    again = cli(s.settings, "runs", "download", run["run_id"], "-o", str(target), check=False)
    to_stdout = cli(s.settings, "runs", "download", run["run_id"], "-o", "-")

    assert [(j["id"], j["status"], j["attempts"]) for j in jobs] == [(str(job["id"]), "completed", 1)]
    assert shown["job"]["inference_run_id"] == str(run["id"])
    assert [(a["attempt"], a["outcome"]) for a in shown["attempts"]] == [(1, "completed")]
    assert shown["attempts"][0]["started_at"] and shown["attempts"][0]["finished_at"]
    assert shown["attempts"][0]["worker"].startswith("boundaries-")  # the node name start_worker gives (-n)
    assert f"pid {s.workers[0].pid}" in shown["attempts"][0]["worker"]
    assert shown["run"]["run_id"] == run["run_id"] and shown["dead_letters"] == []
    assert [(r["run_id"], r["video_id"], r["total_pairs"]) for r in runs] == [(run["run_id"], vid, 126)]
    assert by_run_id == by_row_id
    assert by_run_id["run"]["wasabi_storage_key"] == run["wasabi_storage_key"] and by_run_id["pairs"] == 126
    assert [(g["first_frame"], g["last_frame"]) for g in by_run_id["segments"]] == \
        [(g.first_frame, g.last_frame) for g in want_segments]
    assert len(want_segments) >= 1
    assert run["run_id"] in table and "caption segments" in table
    for g in want_segments:  # the table `boundaries run` prints: start/end seconds and first–last frame
        start, end = g.times()
        assert f"{start:.1f}" in table and f"{end:.1f}" in table and f"{g.first_frame}–{g.last_frame}" in table
    assert target.read_bytes() == published
    assert str(target) in download.stderr.decode()
    assert again.returncode == 2 and "--force" in again.stderr.decode()
    assert to_stdout.stdout == published


def _event(tenant: str, model_version: str = "ops-test") -> JobEvent:
    return JobEvent(video_id=str(uuid.uuid4()), tenant_id=tenant, cropped_frames_version=1,
                    model_version=model_version, source="webhook")


def _published_run(reg, event: JobEvent) -> str:
    """Publish a run row for ``event`` as the worker does (results key only: no file in the store)."""
    now = datetime.now(UTC)
    run_id = run_id_for(f"{event.video_id}:1:{event.model_version}")
    return reg.upsert_run(run_id=run_id, video_id=event.video_id, tenant_id=event.tenant_id, cropped_frames_version=1,
                          model_version=event.model_version, model_checkpoint_path=None,
                          wasabi_storage_key=f"videos/{event.tenant_id}/{event.video_id}/boundaries/missing.db",
                          file_size_bytes=1, total_pairs=10, processing_time_seconds=1.0, started_at=now,
                          completed_at=now)


def test_lists_filter_say_when_cut_and_print_tables_with_the_ids(make_stack):
    s = make_stack()
    reg, tenant, other = s.registry, str(uuid.uuid4()), str(uuid.uuid4())
    ids, created = {}, []
    for status in ("queued", "running", "completed", "failed", "completed"):
        event = _event(tenant)
        job_id, _ = reg.jobs.record(event)
        ids.setdefault(status, []).append(job_id)
        created.append(job_id)
        if status == "queued":
            continue
        attempt = reg.jobs.claim(job_id)
        if status == "completed":
            reg.jobs.complete(job_id, attempt, _published_run(reg, event))
        elif status == "failed":
            dl_id = reg.jobs.dead_letter(job_id, attempt, event.model_dump(mode="json") | {"job_id": job_id},
                                        error_type="layout_error", error_message="LayoutError: layout.db unreadable")
    foreign, _ = reg.jobs.record(_event(other))

    mine = as_json(cli(s.settings, "jobs", "list", "--tenant-id", tenant))
    completed = as_json(cli(s.settings, "jobs", "list", "--tenant-id", tenant, "--status", "completed"))
    cut = cli(s.settings, "jobs", "list", "--tenant-id", tenant, "--limit", "2")
    uncut = cli(s.settings, "jobs", "list", "--tenant-id", tenant, "--limit", "5")
    future = as_json(cli(s.settings, "jobs", "list", "--since", "2999-01-01"))
    runs_cut = cli(s.settings, "runs", "list", "--limit", "1")
    jobs_table = cli(s.settings, "jobs", "list", "--tenant-id", tenant, "--table").stdout.decode()
    failed = as_json(cli(s.settings, "jobs", "show", ids["failed"][0]))
    failed_table = cli(s.settings, "jobs", "show", ids["failed"][0], "--table").stdout.decode()
    missing_job = cli(s.settings, "jobs", "show", str(uuid.uuid4()), check=False)
    missing_file = cli(s.settings, "runs", "show", run_id_for(f"x:{uuid.uuid4()}"), check=False)
    no_results = cli(s.settings, "runs", "show", as_json(runs_cut)[0]["run_id"], check=False)
    bad_id = cli(s.settings, "jobs", "show", "not-a-uuid", check=False)
    bad_status = cli(s.settings, "jobs", "list", "--status", "done", check=False)
    dlq_list = as_json(cli(s.settings, "dlq", "list"))
    dlq_table = cli(s.settings, "dlq", "list", "--table").stdout.decode()
    dlq_show_table = cli(s.settings, "dlq", "show", dl_id, "--table").stdout.decode()

    assert [j["id"] for j in mine] == created[::-1]  # newest first; the other tenant's job left out
    assert sorted(j["id"] for j in completed) == sorted(ids["completed"])
    assert len(json.loads(cut.stdout)) == 2
    assert "2 of 5" in cut.stderr.decode() and "--limit 2" in cut.stderr.decode()
    assert uncut.stderr == b"" and len(json.loads(uncut.stdout)) == 5
    assert future == []
    assert "1 of 2" in runs_cut.stderr.decode()
    assert all(j in jobs_table for j in created) and foreign not in jobs_table
    assert [(a["attempt"], a["outcome"], a["error_type"]) for a in failed["attempts"]] == \
        [(1, "failed", "layout_error")]
    assert [d["id"] for d in failed["dead_letters"]] == [dl_id] and failed["run"] is None
    assert dl_id in failed_table and "layout_error" in failed_table
    # not found: a data error (65), one line "boundaries …: error: …"
    assert missing_job.returncode == 65 and "error: no job with id" in missing_job.stderr.decode()
    assert missing_file.returncode == 65 and "error: no run" in missing_file.stderr.decode()
    assert no_results.returncode == 65 and "missing.db" in no_results.stderr.decode()
    assert all(len(r.stderr.decode().strip().splitlines()) == 1 for r in (missing_job, missing_file, no_results))
    assert bad_id.returncode == 2 and "not-a-uuid" in bad_id.stderr.decode()
    assert bad_status.returncode == 2 and "'done'" in bad_status.stderr.decode()
    assert [d["id"] for d in dlq_list] == [dl_id]
    assert datetime.fromisoformat(dlq_list[0]["created_at"]).tzinfo is not None
    assert dl_id in dlq_table and "layout_error" in dlq_table
    assert dl_id in dlq_show_table and "layout.db unreadable" in dlq_show_table and "attempts" in dlq_show_table


def on_a_terminal(settings: Settings, *args: str, columns: int = 200) -> str:
    """Run a ``boundaries`` command with stdout on a pseudo-terminal ``columns`` wide; returns what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in child_env(settings).items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "boundaries_cli.main", *args], env=env, cwd=REPO, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0, proc.stderr.read().decode()
    return out.decode()


def test_a_terminal_gets_a_table_a_pipe_gets_json(make_stack):
    s = make_stack()
    event = _event(str(uuid.uuid4()))
    job_id, _ = s.registry.jobs.record(event)

    terminal = on_a_terminal(s.settings, "jobs", "list")
    forced = on_a_terminal(s.settings, "jobs", "list", "--json")
    piped = cli(s.settings, "jobs", "list")

    assert job_id in terminal and "job id" in terminal and "┃" in terminal
    assert not terminal.lstrip().startswith("[")
    assert [j["id"] for j in json.loads(forced)] == [job_id]
    assert [j["id"] for j in json.loads(piped.stdout)] == [job_id]
