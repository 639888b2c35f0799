"""The scheduler with a fake engine and a fake pool: no kernels, no processes.

The fake pool runs a task when the scheduler waits for it, oldest first, in the scheduler's thread
(as nbclient's tests fake a kernel's messages), and logs what it was given, so each test reads the
order of executions, merges and reads from the log. Sinks get their real thread.
"""

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import write_records
from mlsm_nb.run import engines
from mlsm_nb.run.context import RunContext, build_executor
from mlsm_nb.run.merge import Merger
from mlsm_nb.run.schedule import Scheduler
from mlsm_nb.run.settings import RunSettings
from mlsm_nb.run.sinks import Sinks
from mlsm_nb.store.base import ResultSink, StoreError
from mlsm_nb.store.rundir import RunDirectory

KEYS = ["a@1", "b@1", "s@1"]  # s is a summary of a and b


@dataclass
class Spec:
    name: str
    version: str
    models: list = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(f"{self.name}.ipynb")


SPECS = [Spec("a", "1"), Spec("b", "1"), Spec("s", "1", [{"name": "a", "version": "1"}, {"name": "b", "version": "1"}])]


class FakePool:
    """A pool of `capacity` whose tasks run when the scheduler waits for them; `tasks` is shared by the
    run's pools, so waiting on the work pool runs a merge too."""

    def __init__(self, capacity: int, log: list, tasks: dict):
        self.capacity, self.log, self.tasks = capacity, log, tasks

    def submit(self, fn, *args, timeout=None) -> Future:
        if fn.__name__ == "merge":  # which executions of the batch the manifest on disk holds by now
            saved = json.loads((Path(fn.__self__.run_root) / "manifest.json").read_text())["executions"]
            self.log.append(("merge submitted", args[0], sorted(k for k, b in saved.items() if str(args[0]) in b)))
        future = Future()
        self.tasks[future] = (fn, args)
        return future

    def wait_any(self, futures) -> set:
        future = next(f for f in futures if not f.done())  # the oldest
        fn, args = self.tasks.pop(future)
        if fn.__name__ == "merge":
            self.log.append(("merge", args[0]))
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - as a pool hands failures back
            future.set_exception(exc)
        return {future}

    def result(self, future):
        return future.result()

    def close(self, cancel=False) -> None:
        self.log.append(("close", cancel))


class Fake(engines.FileEngine):
    """Every record scores 1; `fail` holds (key, batch) executions that raise, `short` those whose output
    lacks a line. Each execution is logged with the batches read so far."""

    def __init__(self, capacity: int = 2):
        self.log: list = []
        tasks: dict = {}
        self.pool, self.merges = FakePool(capacity, self.log, tasks), FakePool(1, self.log, tasks)
        self.fail: set = set()
        self.short: set = set()
        self.on_execute = None

    def pools(self, workers, scheduler):
        return self.pool, self.merges

    def kept(self, executor, key, batch):
        return {}

    def execute(self, executor, key, batch):
        run = executor.run
        self.log.append(("execute", key, batch, len(list(run.batch_path(0).parent.glob("batch-*")))))
        if self.on_execute:
            self.on_execute(key, batch)
        if (key, batch) in self.fail:
            raise RuntimeError("boom")
        lines = run.batch_path(batch).read_text().count("\n") - ((key, batch) in self.short)
        run.output_path(key, batch).write_text('{"score": 1}\n' * lines)

    def executions(self) -> list:
        return [(key, batch) for kind, *rest in self.log if kind == "execute" for key, batch, _ in [rest]]


class Sink(ResultSink):
    """Logs each batch written; `fail_on` raises StoreError, `block` (an Event) holds batch 0's write."""

    name = "fake"

    def __init__(self, log: list, fail_on=None, block: threading.Event | None = None):
        self.log, self.fail_on, self.block, self.unblocked = log, fail_on, block, None

    def open_run(self, manifest):
        pass

    def write_batch(self, run_id, batch, documents):
        if self.block is not None and batch == 0:
            self.unblocked = self.block.wait(10)
        if batch == self.fail_on:
            raise StoreError("the database went away")
        self.log.append(("stored", batch, len(documents)))
        return []

    def stored_batches(self, run_id):
        return set()

    def finish_run(self, manifest):
        pass


@pytest.fixture
def fake():
    engine = Fake()
    engines.register("fake", engine)
    yield engine
    engines.unregister("fake")


def schedule(tmp_path, engine, records=6, batch_size=2, sinks=(), manifest=None, specs=SPECS):
    """Run the scheduler over `records` records; returns (manifest, progress events)."""
    settings = RunSettings(engine="fake", batch_size=batch_size, workers=2)
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.root.mkdir(exist_ok=True)
    run_dir.prepare(KEYS)
    manifest = manifest or {"run_id": "run", "input": {}, "executions": {}}
    executor = build_executor(specs, run_dir, settings, None, 2)
    context = RunContext(specs, run_dir, manifest, settings, executor, keep=bool(sinks))
    events = []
    path = tmp_path / "records.jsonl"
    if not path.exists():
        write_records(path, records)
    writer = Sinks(sinks, "run")
    writer.open(manifest)
    Scheduler(context, engine, path, {}, writer, engine.pools(2, None), events.append).run()
    return manifest, events


def test_a_summary_runs_after_its_models_of_the_same_batch_and_the_batch_merges_after_all_are_recorded(
        tmp_path, fake):
    manifest, events = schedule(tmp_path, fake)
    order = [(e[0], e[1], e[2]) if e[0] == "execute" else e for e in fake.log if e[0] in ("execute", "merge")]
    for batch in range(3):
        at = {key: order.index(("execute", key, batch)) for key in KEYS}
        assert at["s@1"] > at["a@1"] and at["s@1"] > at["b@1"]
        assert order.index(("merge", batch)) > at["s@1"]
        assert ("merge submitted", batch, KEYS) in fake.log  # recorded before the merge starts
    assert sorted(fake.executions()) == sorted((k, b) for k in KEYS for b in range(3))
    assert manifest["input"]["batches"] == 3 and set(manifest["batch_stats"]) == {"0", "1", "2"}
    assert manifest["models"]["s@1"]["records"] == 6 and manifest["failed_executions"] == 0
    assert [e.done for e in events] == list(range(1, 10)) and events[-1].total == 9


def test_records_are_read_only_as_far_ahead_as_the_workers_need(tmp_path, fake):
    """One model, a batch per record, capacity 2: a task running or waiting per batch read, at most 2, and one
    batch more, read while none is waiting (the next free worker starts it at once)."""
    schedule(tmp_path, fake, records=10, batch_size=1, specs=SPECS[:1])
    runs = [(batch, read) for kind, *rest in fake.log if kind == "execute" for _, batch, read in [rest]]
    assert runs[0] == (0, 3)  # the first execution ran when 3 of 10 batches were read
    assert all(read <= batch + 3 for batch, read in runs) and [b for b, _ in runs] == list(range(10))


def test_a_failed_execution_fails_only_its_records(tmp_path, fake):
    fake.fail = {("a@1", 1)}
    manifest, _ = schedule(tmp_path, fake)
    statuses = {(k, int(b)): e["status"] for k, batches in manifest["executions"].items() for b, e in batches.items()}
    assert [kb for kb, status in statuses.items() if status != "ok"] == [("a@1", 1)]
    assert "RuntimeError: boom" in manifest["executions"]["a@1"]["1"]["error"]
    results = {d["id"]: d["results"] for d in RunDirectory(tmp_path / "run").results()}
    failed = {i for i, r in results.items() if r["a"]["1"].get("_error_kind") == "notebook_failed"}
    assert failed == {2, 3} and all(r["b"]["1"] == {"score": 1} for r in results.values())
    assert manifest["models"]["a@1"]["errors"] == {"notebook_failed": 2} and manifest["failed_executions"] == 1


def test_a_merge_failure_fails_the_culprit_or_the_batch_and_the_others_go_on(tmp_path, fake, monkeypatch):
    fake.short = {("b@1", 1)}  # its output lacks a line: b's execution of batch 1 fails
    merge = Merger.merge

    def merge_or_fail(self, batch, *args):
        if batch == 2:
            raise RuntimeError("disk on fire")
        return merge(self, batch, *args)

    monkeypatch.setattr(Merger, "merge", merge_or_fail)
    manifest, _ = schedule(tmp_path, fake)
    assert manifest["executions"]["b@1"]["1"]["status"] == "failed"
    assert "its output cannot be merged" in manifest["executions"]["b@1"]["1"]["error"]
    assert manifest["merge_errors"] == {"2": "batch 2: its results could not be merged: RuntimeError: disk on fire"}
    assert set(manifest["batch_stats"]) == {"0"} and manifest["models"]["a@1"]["records"] == 2


def test_a_resume_skips_intact_executions_and_merged_batches(tmp_path, fake):
    manifest, _ = schedule(tmp_path, fake)
    run = RunDirectory(tmp_path / "run")
    run.results_path(1).unlink()  # batch 1's merge is lost
    manifest["executions"]["a@1"]["2"]["status"] = "failed"  # a's batch 2 runs again, so s's too
    fake.log.clear()
    again, events = schedule(tmp_path, fake, manifest=dict(manifest))
    assert sorted(fake.executions()) == [("a@1", 2), ("s@1", 2)]
    assert [e for e in fake.log if e[0] == "merge"] == [("merge", 1), ("merge", 2)]
    assert sorted((e.key, e.batch) for e in events if e.earlier) == sorted(
        [(k, b) for k in KEYS for b in (0, 1)] + [("b@1", 2)])
    assert again["models"]["s@1"]["records"] == 6 and again["failed_executions"] == 0


def test_a_failed_sink_is_not_tried_again_and_the_run_goes_on(tmp_path, fake):
    log = []
    manifest, _ = schedule(tmp_path, fake, sinks=[Sink(log, fail_on=1)])
    assert log == [("stored", 0, 2)]
    assert manifest["store_error"] == "fake: batch 1: the database went away"
    assert manifest["batch_states"] == {"0": "stored", "1": "merged", "2": "merged"}
    assert set(manifest["batch_stats"]) == {"0", "1", "2"}


def test_a_blocked_sink_holds_back_no_execution_and_each_batch_is_stored_after_its_merge(tmp_path, fake):
    log, released = fake.log, threading.Event()
    sink = Sink(log, block=released)
    fake.on_execute = lambda key, batch: batch == 2 and released.set()  # batch 0's write waits for this
    manifest, _ = schedule(tmp_path, fake, sinks=[sink])
    assert sink.unblocked is True
    stored = [e for e in log if e[0] == "stored"]
    assert stored == [("stored", b, 2) for b in range(3)]  # every store is done when the scheduler returns
    for batch in range(3):
        assert log.index(("merge", batch)) < log.index(("stored", batch, 2))
    assert manifest["batch_states"] == {str(b): "stored" for b in range(3)}
