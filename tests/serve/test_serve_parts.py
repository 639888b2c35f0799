"""The serving parts without a server: the protocol mapping, schemas, parameters, the result buffer."""

from __future__ import annotations

import json
import math
import struct
import threading
import time

import pytest

from mlsm_nb.core.model import Model
from mlsm_nb.serve.bundle import fields_schema
from mlsm_nb.serve.declared import module_outputs, module_parameters
from mlsm_nb.serve.oip import (
    InferError,
    attach_binary,
    encode_response,
    infer_response,
    records_from_request,
    split_body,
    wanted_outputs,
)
from mlsm_nb.serve.storage import ResultBuffer
from mlsm_nb.serve.timing import Timings
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
    assert outputs["ok"] == {"name": "ok", "datatype": "FP64", "shape": [2], "data": [1.0, None]}  # BOOL has no null
    assert outputs["_error_kind"]["data"] == [None, "score_raised"]
    assert response["parameters"] == {"bundle": "abc", "status": "draft"}
    whole = infer_response(model, entries[:1], None, "abc", [], {"ok": "bool", "n": "int"})
    assert [(o["name"], o["datatype"], o["data"]) for o in whole["outputs"]] == \
        [("ok", "BOOL", [True]), ("n", "FP64", [None]), ("score", "FP64", [0.5]), ("_status", "BYTES", ["draft"])]


def _bytes_tensor(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_binary_inputs_are_read_by_datatype_in_the_order_of_inputs():
    data = [struct.pack("<2q", 7, -8), struct.pack("<2?", True, False), struct.pack("<2f", 0.5, 1.5),
            _bytes_tensor("é".encode(), b""), struct.pack("<2H", 0x3FC0, 0xC000)]
    body = {"inputs": [{"name": n, "datatype": t, "shape": [2], "parameters": {"binary_data_size": len(d)}}
                       for n, t, d in zip("abcde", ("INT64", "BOOL", "FP32", "BYTES", "BF16"), data, strict=True)]}
    body["inputs"].insert(2, {"name": "j", "datatype": "INT64", "shape": [2], "data": [1, 2]})
    attach_binary(body, b"".join(data))
    records, _ = records_from_request(body, "a")
    assert records == [{"a": 7, "data": {"b": True, "j": 1, "c": 0.5, "d": "é", "e": 1.5}},
                       {"a": -8, "data": {"b": False, "j": 2, "c": 1.5, "d": "", "e": -2.0}}]


@pytest.mark.parametrize("inputs, binary, message", [
    ([("a", "INT64", 16)], b"\0" * 8, r"^input 'a': binary_data_size 16 runs past the body's binary data \(8 bytes"),
    ([("a", "INT64", 8)], b"\0" * 10, r"^2 bytes after the JSON request belong to no input"),
    ([("a", "INT64", 6)], b"\0" * 6, r"^input 'a': 6 bytes are not a whole number of INT64 values \(8 bytes each\)"),
    ([("a", "COMPLEX", 8)], b"\0" * 8, r"^input 'a': datatype 'COMPLEX' is not one of BOOL, .*, BF16, BYTES$"),
    ([("a", "BYTES", 6)], _bytes_tensor(b"\xff\xfe"), r"^input 'a': BYTES element 0 is not UTF-8 text$"),
    ([("a", "BYTES", 6)], struct.pack("<I", 9) + b"ab", r"^input 'a': BYTES element 0 of 9 bytes runs past"),
    ([("a", "INT64", -1)], b"", r"^input 'a': binary_data_size must be a number of bytes, got -1$"),
])
def test_bad_binary_inputs_are_one_line(inputs, binary, message):
    body = {"inputs": [{"name": n, "datatype": t, "parameters": {"binary_data_size": size}} for n, t, size in inputs]}
    with pytest.raises(InferError, match=message):
        attach_binary(body, binary)


def test_the_json_request_ends_where_its_header_says():
    assert split_body(b'{"a": 1}xyz', "8") == (b'{"a": 1}', b"xyz")
    assert split_body(b'{"a": 1}', None) == (b'{"a": 1}', b"")
    for bad in ("9", "-1", "x"):
        with pytest.raises(InferError, match="Inference-Header-Content-Length"):
            split_body(b'{"a": 1}', bad)
    shared = {"inputs": [{"name": "a", "parameters": {"shared_memory_region": "r"}}]}
    with pytest.raises(InferError, match="shared memory extension is not supported"):
        attach_binary(shared, b"")


def test_binary_outputs_follow_the_json_response_with_their_sizes():
    model = Model("m", {"x": int}, "1", lambda d, r: {})
    entries = [{"score": 0.25, "n": 3, "label": "hé"}, {"_error": "boom", "_error_kind": "score_raised"}]
    body = {"parameters": {"binary_data_output": True},
            "outputs": [{"name": "score"}, {"name": "n"}, {"name": "label"}, {"name": "_error_kind",
                                                                               "parameters": {"binary_data": False}}]}
    wanted = wanted_outputs(body, model, {"score": "float", "n": "int", "label": "str"})
    content, headers = encode_response(infer_response(model, entries, None, "abc", [], {}, wanted), wanted)
    length = int(headers["inference-header-content-length"])
    assert headers["content-type"] == "application/octet-stream"
    head = json.loads(content[:length])
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in head["outputs"]]
    assert sizes == [16, 16, 4 + 3 + 4, None] and head["outputs"][3]["data"] == [None, "score_raised"]
    binary = content[length:]
    score = struct.unpack("<2d", binary[:16])
    assert score[0] == 0.25 and math.isnan(score[1])
    assert head["outputs"][1]["datatype"] == "FP64" and struct.unpack("<2d", binary[16:32])[0] == 3.0
    assert binary[32:] == _bytes_tensor("hé".encode(), b"")
    plain, headers = encode_response(infer_response(model, entries, None, "abc", []), None)
    assert headers == {"content-type": "application/json"} and json.loads(plain)["outputs"][0]["data"] == [0.25, None]


def test_requested_outputs_are_checked_against_what_the_model_states():
    model = Model("m", {"x": int}, "1", lambda d, r: {})
    with pytest.raises(InferError, match=r"^model m 1 has no output 'scroe' \(it has score, _status, "):
        wanted_outputs({"outputs": [{"name": "scroe"}]}, model, {"score": "float"})
    assert wanted_outputs({"outputs": [{"name": "any"}]}, model, {}).names == ["any"]  # states none: not checked
    with pytest.raises(InferError, match="binary_data must be true or false"):
        wanted_outputs({"outputs": [{"name": "score", "parameters": {"binary_data": 1}}]}, model, {})


def test_outputs_are_read_from_the_score_cell_and_the_examples_without_running_them():
    text = ("# --- cell 1 [setup] ---\nraise SystemExit\n\n# --- cell 3 [score] ---\n"
            "def helper():\n    return {'not': 1}\n\n"
            "def score(data, results):\n    x = data['x']\n    if x < 0:\n        return {'score': 0, 'why': f'{x}'}\n"
            "    return {'score': x / 2, 'ok': x > 1, 'n': round(x), 'raw': x, 'tag': 'a' if x else 'b'}\n\n"
            "# --- cell 4 [examples] ---\nexamples = [{'data': {'x': 2}, 'expected': {'raw': 2, 'extra': 'e'}},\n"
            "            {'data': {'x': 3}, 'expected': {'raw': 3.5, 'score': 1}}]\n")
    assert module_outputs(text) == {"score": "float", "why": "str", "ok": "bool", "n": "int", "raw": "float",
                                    "tag": "str", "extra": "str"}
    assert module_outputs("# --- cell 0 [score] ---\ndef score(data, results):\n    return dict(a=1)\n") == {}


def test_server_timing_lists_the_stages_in_milliseconds():
    timings = Timings()
    timings.add("parse", 0.000123)
    timings.add("score", 0.0015)
    timings.add("parse", 0.000001)
    assert timings.header(0.002) == "parse;dur=0.124, score;dur=1.500, total;dur=2.000"


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
