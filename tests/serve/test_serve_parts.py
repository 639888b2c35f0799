"""The serving parts without a server: the protocol mapping, schemas, parameters, the result buffer."""

from __future__ import annotations

import threading
import time

import pytest

from mlsm_nb.core.model import Model
from mlsm_nb.serve.bundle import fields_schema, module_parameters
from mlsm_nb.serve.oip import InferError, infer_response, records_from_request
from mlsm_nb.serve.storage import ResultBuffer
from mlsm_nb.store.base import ResultSink, StoreError


def test_infer_inputs_become_flat_records_with_ids():
    body = {"id": "r", "inputs": [{"name": "id", "datatype": "INT64", "shape": [2], "data": [7, 8]},
                                  {"name": "x", "datatype": "INT64", "shape": [2, 1], "data": [[1], [2]]}]}
    records, request_id = records_from_request(body, "id")
    assert request_id == "r"
    assert records == [{"id": 7, "data": {"x": 1}}, {"id": 8, "data": {"x": 2}}]
    records, _ = records_from_request({"inputs": [{"name": "x", "data": [1]}]}, "id")
    assert records == [{"id": "row-0", "data": {"x": 1}}]


@pytest.mark.parametrize("body, message", [
    ({}, "non-empty 'inputs' list"),
    ({"inputs": [{"data": [1]}]}, "needs a 'name'"),
    ({"inputs": [{"name": "a", "data": [1]}, {"name": "b", "data": [1, 2]}]}, "different lengths"),
    ({"inputs": [{"name": "a", "shape": [3], "data": [1, 2]}]},
     r"^input 'a': shape \[3\] holds 3 values, 'data' has 2$"),
    ({"inputs": [{"name": "a", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}, "one value per row"),
    ({"inputs": [{"name": "a", "shape": "2", "data": [1, 2]}]}, "'shape' must be a list of sizes"),
    ({"inputs": [{"name": "a", "shape": [-2], "data": [1, 2]}]}, "'shape' must be a list of sizes"),
])
def test_bad_infer_requests_are_one_line(body, message):
    with pytest.raises(InferError, match=message):
        records_from_request(body, "id")


def test_infer_outputs_are_typed_columns_with_nulls_for_errors():
    model = Model("m", {"x": int}, "1", lambda d, r: {})
    entries = [{"score": 0.5, "ok": True, "_status": "draft"}, {"_error": "boom", "_error_kind": "score_raised"}]
    response = infer_response(model, entries, None, "abc", [])
    outputs = {o["name"]: o for o in response["outputs"]}
    assert outputs["score"] == {"name": "score", "datatype": "FP64", "shape": [2], "data": [0.5, None]}
    assert outputs["ok"]["datatype"] == "BOOL"
    assert outputs["_error_kind"]["data"] == [None, "score_raised"]
    assert response["parameters"] == {"bundle": "abc", "status": "draft"}


def test_fields_become_json_schema():
    model = Model("m", {"n": {"type": "int", "min": 0, "max": 9}, "s": {"type": "str", "allowed": ["a", "b"]},
                        "f": {"type": "float", "nullable": True, "required": False}}, "1", lambda d, r: {})
    schema = fields_schema(model)
    assert schema["properties"] == {"n": {"type": "integer", "minimum": 0, "maximum": 9},
                                    "s": {"type": "string", "enum": ["a", "b"]}, "f": {"type": ["number", "null"]}}
    assert schema["required"] == ["n", "s"]


def test_parameters_are_read_from_the_module_without_running_it():
    text = ("# --- cell 0 [version] ---\nname = 'x'\n\n# --- cell 2 [parameters] ---\nthreshold = 0.5\n"
            "label = 'a'\nnow = __import__('os').system('false')\n\n# --- cell 3 [score] ---\nz = 1\n")
    assert module_parameters(text) == {"threshold": 0.5, "label": "a", "now": "__import__('os').system('false')"}
    assert module_parameters("# --- cell 0 [score] ---\nx = 1\n") == {}


class FlakySink(ResultSink):
    """In memory; refuses every call while `down` is set (a database outage)."""

    def __init__(self):
        self.down = threading.Event()
        self.batches: dict[tuple[str, int], list] = {}
        self.runs: dict[str, dict] = {}

    def _check(self):
        if self.down.is_set():
            raise StoreError("MongoDB at mongodb://db is not reachable")

    def open_run(self, manifest):
        self._check()
        self.runs[manifest["run_id"]] = dict(manifest)

    def write_batch(self, run_id, batch, documents):
        self._check()
        self.batches[run_id, batch] = list(documents)

    def stored_batches(self, run_id):
        return {b for r, b in self.batches if r == run_id}

    def finish_run(self, manifest):
        self._check()
        self.runs[manifest["run_id"]] = dict(manifest)


def wait(predicate, timeout=10):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_buffer_never_blocks_and_stores_everything_after_an_outage():
    sink = FlakySink()
    sink.down.set()
    opened = []
    buffer = ResultBuffer(lambda: opened.append(1) or sink, flush_seconds=0.05, retry_seconds=0.05, batch_size=4)
    started = time.perf_counter()
    for i in range(10):
        buffer.add([{"id": i, "run_id": buffer.run_id}])
    assert time.perf_counter() - started < 0.05  # adding never waits for the sink
    wait(lambda: buffer.status()["error"])
    assert buffer.status()["pending"] == 10 and "not reachable" in buffer.status()["error"]
    sink.down.clear()
    wait(lambda: buffer.status()["pending"] == 0)
    assert buffer.status() | {"error_at": None} == {"run_id": buffer.run_id, "pending": 0, "stored": 10,
                                                    "error": None, "error_at": None}
    stored = [d["id"] for (_, b) in sorted(sink.batches) for d in sink.batches[buffer.run_id, b]]
    assert stored == list(range(10))  # in order, batch by batch
    assert buffer.close() == 0
    assert sink.runs[buffer.run_id]["status"] == "succeeded"
    assert sink.runs[buffer.run_id]["input"]["records"] == 10


def test_buffer_tells_of_a_sink_it_cannot_open_before_anything_is_stored():
    sink = FlakySink()
    sink.down.set()
    buffer = ResultBuffer(lambda: sink._check() or sink, flush_seconds=30, retry_seconds=0.05)  # as connecting does
    wait(lambda: buffer.status()["error"])
    assert buffer.status()["pending"] == 0 and "not reachable" in buffer.status()["error"]
    sink.down.clear()
    wait(lambda: buffer.status()["error"] is None)
    assert buffer.close() == 0 and sink.runs == {}  # nothing served: no run recorded


def test_buffer_close_during_an_outage_reports_what_was_not_stored():
    sink = FlakySink()
    sink.down.set()
    buffer = ResultBuffer(lambda: sink, flush_seconds=0.05, retry_seconds=0.05)
    buffer.add([{"id": 1}, {"id": 2}])
    assert buffer.close(timeout=2) == 2
