"""One contract for every GPU runner (worker/runners/base.py): LocalRunner (process pool) and ModalRunner
whose Modal boundary (``modal.Cls.from_name`` → instance → ``.spawn`` → ``FunctionCall.get``) is replaced
by an in-process stand-in that runs the real shard function — a fake of a third-party API only.

Frames live in S3 (moto on loopback): the Modal runner refuses local-directory stores.
"""

from __future__ import annotations

import concurrent.futures
import json
import pickle
import threading
import time

import pytest

from boundaries.errors import MissingFramesError
from boundaries.shards import ShardSummary
from boundaries.storage.local import LocalStore
from boundaries.storage.s3 import S3Store
from config.settings import Settings
from tests.unit.test_modal_app import tiny_request, write_tiny_video
from worker.runners.base import ShardError
from worker.runners.local import LocalRunner
from worker.runners.modal import METHOD_NAME, ModalRunner, RunnerConfigError, is_permanent

PREFIX, LAYOUT = "t/v/cropped_frames_v1/", "t/v/layout.db"


class FakeCall:
    """Stands in for ``modal.FunctionCall``: ``get(timeout)`` raises the builtin TimeoutError when no
    output is ready (as modal 1.6's ``poll_function`` does); remote exceptions come back unpickled."""

    def __init__(self, future: concurrent.futures.Future):
        self.future = future
        self.cancelled = False

    def get(self, timeout: float | None = None):
        try:
            return self.future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError() from None

    def cancel(self, terminate_containers: bool = False):
        self.cancelled = True
        self.future.cancel()


class FakeModal:
    """Stands in for ``modal.Cls.from_name(app, "BoundaryInference")``; records every contact."""

    def __init__(self, remote=None, workers: int = 4):
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.lookups = 0
        self.spawned: list[dict] = []
        self.params: list[dict] = []
        self.calls: list[FakeCall] = []
        self.remote = remote or self._run_shard
        self._lock = threading.Lock()

    def lookup(self):
        self.lookups += 1
        return self

    def __call__(self, **params):  # Cls(...) -> instance with the method
        self.params.append(params)
        fake = self

        class _Method:
            def spawn(self, payload):
                json.dumps(payload)  # crosses the wire: must be plain JSON
                with fake._lock:
                    fake.spawned.append(payload)
                call = FakeCall(fake.pool.submit(fake._remote, payload))
                fake.calls.append(call)
                return call

        return type("Obj", (), {METHOD_NAME: _Method()})()

    def _remote(self, payload):
        try:
            return self.remote(payload)
        except Exception as e:  # the container's exception, as Modal ships it back
            raise pickle.loads(pickle.dumps(e)) from None  # noqa: S301 — our own bytes, just made

    @staticmethod
    def _run_shard(payload):
        from modal_gpu.shard import run_shard_remote  # what BoundaryInference.run_boundary_inference_batch runs

        return run_shard_remote(payload)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def s3_store(moto_s3, s3_bucket):
    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    write_tiny_video(store, PREFIX, LAYOUT, frames=40)
    return store


@pytest.fixture(params=["local", "modal"])
def runner(request):
    if request.param == "local":
        r = LocalRunner(workers=1)
        r.backend_contacts = lambda: 0 if r._pool is None else 1
        yield r
        r.close()
    else:
        fake = FakeModal()
        r = ModalRunner("boundary-inference", deadline_s=120, cls_lookup=fake.lookup)
        r.backend_contacts = lambda: fake.lookups + len(fake.spawned)
        yield r
        fake.close()


def test_results_come_back_in_request_order(runner, s3_store):
    # Given three shards, listed out of pair order
    reqs = [tiny_request(s3_store, PREFIX, LAYOUT, a, b) for a, b in [(20, 39), (0, 10), (10, 20)]]
    # When the runner maps them
    results = runner.map(reqs)
    # Then there is one summary per request, in request order, and each output was written
    assert [type(r) for r in results] == [ShardSummary] * 3
    assert [r.shard_id for r in results] == [q.shard_id for q in reqs]
    assert [r.pairs for r in results] == [19, 10, 10]
    assert all(s3_store.exists(q.output_key) for q in reqs)


def test_shard_failures_are_data_with_permanence(runner, s3_store):
    # Given a good shard, one whose frames do not exist and one asking for a model the predictor does not
    # serve (both permanent: retrying on the same predictor cannot help)
    good = tiny_request(s3_store, PREFIX, LAYOUT, 0, 10)
    missing = tiny_request(s3_store, "t/v/cropped_frames_v9/", LAYOUT, 0, 10)
    other_model = tiny_request(s3_store, PREFIX, LAYOUT, 10, 20, model_version="other-model")
    # When the runner maps them
    results = runner.map([missing, good, other_model])
    # Then failures are ShardErrors in place, permanent only for the boundaries PermanentError
    assert isinstance(results[1], ShardSummary) and results[1].shard_id == good.shard_id
    assert isinstance(results[0], ShardError) and results[0].permanent
    assert results[0].error_type == "missing_frames" and results[0].shard_id == missing.shard_id
    assert isinstance(results[2], ShardError) and results[2].permanent
    assert results[2].error_type == "model_version_mismatch" and "other-model" in results[2].message


def test_empty_list_never_contacts_the_backend(runner):
    assert runner.map([]) == []
    assert runner.backend_contacts() == 0


# --- Modal-specific behaviour -----------------------------------------------------------------------

def test_modal_runner_refuses_a_local_store_before_sending(tmp_path):
    fake = FakeModal()
    runner = ModalRunner("boundary-inference", cls_lookup=fake.lookup)
    req = tiny_request(LocalStore(tmp_path), PREFIX, LAYOUT, 0, 5)
    with pytest.raises(RunnerConfigError, match="local-directory"):
        runner.map([req])
    assert fake.lookups == 0 and fake.spawned == []
    fake.close()
    with pytest.raises(RunnerConfigError, match="BOUNDARIES_STORAGE_BACKEND"):
        ModalRunner.from_settings(Settings(storage_backend="local", runner="modal"))
    r = ModalRunner.from_settings(Settings(storage_backend="s3", modal_call_deadline_s=42, modal_app_name="x"))
    assert (r.app_name, r.deadline_s) == ("x", 42)


def test_modal_runner_cancels_shards_past_the_deadline(moto_s3, s3_bucket):
    # Given a backend where shard [0, 5) finishes and shard [5, 10) hangs
    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    release = threading.Event()

    def remote(payload):
        if payload["first_pair"] == 5:
            release.wait(10)
        return ShardSummary(shard_id=payload["shard_id"], pairs=5, seconds=0.01, pairs_per_s=500, decode_s=0,
                            model_s=0, output_key=payload["output_key"]).model_dump()

    fake = FakeModal(remote)
    runner = ModalRunner("boundary-inference", deadline_s=0.5, cls_lookup=fake.lookup)
    reqs = [tiny_request(store, PREFIX, LAYOUT, 0, 5), tiny_request(store, PREFIX, LAYOUT, 5, 10)]
    # When mapped with a 0.5 s deadline
    t0 = time.monotonic()
    results = runner.map(reqs)
    elapsed = time.monotonic() - t0
    release.set()
    fake.close()
    # Then the finished shard is kept, the hanging one is a transient error and its call was cancelled
    assert elapsed < 5
    assert isinstance(results[0], ShardSummary)
    assert isinstance(results[1], ShardError) and not results[1].permanent
    assert results[1].error_type == "deadline_exceeded"
    assert [c.cancelled for c in fake.calls] == [False, True]


def test_modal_runner_parametrizes_the_class_by_model(moto_s3, s3_bucket):
    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    ok = lambda p: ShardSummary(shard_id=p["shard_id"], pairs=1, seconds=1, pairs_per_s=1, decode_s=0,  # noqa: E731
                                model_s=0, output_key=p["output_key"]).model_dump()
    fake = FakeModal(ok)
    runner = ModalRunner("boundary-inference", cls_lookup=fake.lookup)
    reqs = [tiny_request(store, PREFIX, LAYOUT, 0, 1),
            tiny_request(store, PREFIX, LAYOUT, 1, 2, checkpoint_path="/local/ckpt.pt",
                         model_version="mrn0fkfd_a4b1a61c", batch_size=128)]
    assert all(isinstance(r, ShardSummary) for r in runner.map(reqs))
    fake.close()
    # classical detector: empty model_version; a checkpoint: its model_version (volume path in the container)
    assert fake.params == [{"model_version": "", "batch_size": 64},
                           {"model_version": "mrn0fkfd_a4b1a61c", "batch_size": 128}]
    assert fake.lookups == 1


def test_permanence_is_decided_by_type_name():
    class MissingFramesErrorRemote(Exception):
        pass

    # a remote class that does not unpickle here but carries a boundaries name in its bases
    Remote = type("CorruptChunkError", (Exception,), {})
    assert is_permanent(MissingFramesError("x")) and is_permanent(Remote("y"))
    assert not is_permanent(MissingFramesErrorRemote("z")) and not is_permanent(TimeoutError())


def test_modal_runner_turns_a_failed_submission_into_a_transient_error(moto_s3, s3_bucket):
    from modal.exception import ConnectionError as ModalConnectionError

    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    ok = lambda p: ShardSummary(shard_id=p["shard_id"], pairs=1, seconds=1, pairs_per_s=1, decode_s=0,  # noqa: E731
                                model_s=0, output_key=p["output_key"]).model_dump()
    fake = FakeModal(ok)
    real_call = fake.__call__

    def flaky(**params):  # the second submission cannot reach Modal
        obj = real_call(**params)
        if len(fake.params) == 2:
            def refuse(payload):
                raise ModalConnectionError("connection reset")

            getattr(obj, METHOD_NAME).spawn = refuse
        return obj

    runner = ModalRunner("boundary-inference", cls_lookup=lambda: flaky)
    reqs = [tiny_request(store, PREFIX, LAYOUT, a, a + 1) for a in range(3)]
    results = runner.map(reqs)
    fake.close()
    assert [type(r) for r in results] == [ShardSummary, ShardError, ShardSummary]
    assert not results[1].permanent and "connection reset" in results[1].message
