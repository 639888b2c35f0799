"""`mlsm-nb serve` driven by a real Open Inference Protocol client: tritonclient's HTTP client, with its
defaults (binary tensors both ways) and with JSON tensors; and where a scoring request's time went."""

from __future__ import annotations

import json
import math
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from conftest import NOTEBOOKS
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.extract import extract_bundle
from servers import ServeServer

pytestmark = pytest.mark.slow
NUMPY = {"INT64": np.int64, "BOOL": np.bool_, "FP64": np.float64}
MODELS = [("lead_lr", "1.0.0"), ("lead_rules", "1.0.0"), ("lead_rules", "2.0.0"), ("champion", "1.0.0")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = tmp_path_factory.mktemp("leads") / "bundle"
    extract_bundle([NOTEBOOKS], bundle)
    server = ServeServer(bundle).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def leads():
    leads = list(generate_leads(5, seed=11))
    leads[2]["data"]["site_visits"] = -1  # a bad value: lead_lr and lead_rules fail on this row, the rest score
    return leads


def tensors(leads: list[dict], fields: list[dict], binary: bool = True) -> list:
    """An id input and one input per field, as a tritonclient user builds them from numpy arrays."""
    inputs = []
    for name, datatype in [("id", "BYTES"), *((f["name"], f["datatype"]) for f in fields)]:
        values = [lead["id"] if name == "id" else lead["data"][name] for lead in leads]
        array = (np.array([v.encode() for v in values], dtype=np.object_) if datatype == "BYTES"
                 else np.array(values, dtype=NUMPY[datatype]))
        tensor = triton.InferInput(name, list(array.shape), datatype)
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    return inputs


def fields_of(client, name: str, version: str) -> list[dict]:
    """The fields the model reads: its own, or for a summary its models' (it scores them first)."""
    meta = client.get_model_metadata(name, version)
    if meta["parameters"]["kind"] != "summary":
        return meta["inputs"]
    return [f for model in ("lead_lr", "lead_rules") for f in client.get_model_metadata(model, "1.0.0")["inputs"]]


def scored_alone(server, leads) -> dict:
    """What POST /score gives each lead: id -> results."""
    response = httpx.post(server.url + "/score", json=leads, timeout=60)
    assert response.status_code == 200
    return {d["id"]: d["results"] for d in response.json()["documents"]}


def same(got: float, want: float | None) -> bool:
    return math.isnan(got) if want is None else got == want


@pytest.mark.parametrize("name, version", MODELS)
def test_tritonclient_with_its_defaults_scores_as_post_score(server, client, leads, name, version):
    result = client.infer(name, tensors(leads, fields_of(client, name, version)), model_version=version)
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert outputs["score"]["datatype"] == "FP64" and "binary_data_size" in outputs["score"]["parameters"]
    alone = scored_alone(server, leads)
    want = [alone[lead["id"]][name][version] for lead in leads]
    scores = result.as_numpy("score")
    assert scores.shape == (len(leads),)
    assert all(same(got, entry.get("score")) for got, entry in zip(scores.tolist(), want, strict=True))
    kinds = [kind.decode() or None for kind in result.as_numpy("_error_kind").tolist()]
    assert kinds == [entry.get("_error_kind") for entry in want]
    if name != "champion":
        assert kinds[2] == "bad_value" and math.isnan(scores[2])  # a missing value in binary: NaN / empty


def test_json_tensors_both_ways_score_as_post_score(server, client, leads):
    fields = fields_of(client, "lead_rules", "1.0.0")
    asked = [triton.InferRequestedOutput(n, binary_data=False) for n in ("score", "points", "_error_kind")]
    result = client.infer("lead_rules", tensors(leads, fields, binary=False), model_version="1.0.0",
                          outputs=asked, request_id="json-1")
    response = result.get_response()
    assert response["id"] == "json-1"
    assert [o["name"] for o in response["outputs"]] == ["score", "points", "_error_kind"]
    assert all("data" in o and "parameters" not in o for o in response["outputs"])
    want = [scored_alone(server, leads)[lead["id"]]["lead_rules"]["1.0.0"] for lead in leads]
    assert all(same(got, entry.get("score")) for got, entry in zip(result.as_numpy("score").tolist(), want,
                                                                  strict=True))
    # points are INT64 in the metadata; in a response where a row has none they are FP64 (NaN / null there)
    points = response["outputs"][1]
    assert points["datatype"] == "FP64" and points["data"][2] is None
    assert result.as_numpy("points").tolist()[:2] == [float(e["points"]) for e in want[:2]]


def test_binary_and_json_outputs_mix_in_one_response(client, leads):
    fields = fields_of(client, "lead_lr", "1.0.0")
    asked = [triton.InferRequestedOutput("score"), triton.InferRequestedOutput("_status", binary_data=False)]
    both = client.infer("lead_lr", tensors(leads[:2], fields), outputs=asked).get_response()["outputs"]
    assert both[0]["name"] == "score" and both[0]["parameters"] == {"binary_data_size": 16} and "data" not in both[0]
    assert both[1] == {"name": "_status", "datatype": "BYTES", "shape": [2], "data": ["active", "active"]}


@pytest.mark.parametrize("binary", [True, False])
def test_reasons_are_a_bytes_tensor_of_each_rows_json_as_post_score_gives_them(server, client, leads, binary):
    fields = fields_of(client, "champion", "1.0.0")
    alone = scored_alone(server, leads)
    for name in ("lead_lr", "champion"):
        asked = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("score", "_reasons")]
        result = client.infer(name, tensors(leads, fields if name == "champion" else fields_of(client, name, "1.0.0")),
                              outputs=asked)
        output = next(o for o in result.get_response()["outputs"] if o["name"] == "_reasons")
        assert output["datatype"] == "BYTES" and output["shape"] == [len(leads)]
        texts = [t.decode() if isinstance(t, bytes) else t for t in result.as_numpy("_reasons").tolist()]
        want = [alone[lead["id"]][name]["1.0.0"].get("_reasons") for lead in leads]
        assert [json.loads(t) if t else None for t in texts] == want  # a row without: empty (binary), null (JSON)
        assert want[0] and want[2] is None  # lead 2 is refused: no reasons; the others come with them


def test_model_metadata_lists_the_outputs_the_notebook_states(client):
    def outputs(name, version):
        return {o["name"]: o["datatype"] for o in client.get_model_metadata(name, version)["outputs"]}

    assert outputs("lead_rules", "1.0.0") == {"score": "FP64", "points": "INT64", "_status": "BYTES",
                                              "_error": "BYTES", "_error_kind": "BYTES", "_error_type": "BYTES",
                                              "_error_at": "BYTES", "_reasons": "BYTES"}
    assert list(outputs("lead_lr", "1.0.0")).count("_reasons") == 1  # stated in lead_lr, listed once
    assert {k: v for k, v in outputs("champion", "1.0.0").items() if not k.startswith("_")} == \
        {"score": "FP64", "champion": "BYTES", "route": "BYTES"}
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_a_shape_that_does_not_hold_the_binary_data_is_400_naming_the_input(client, leads):
    inputs = tensors(leads, fields_of(client, "lead_lr", "1.0.0"))
    inputs[1].set_shape([len(leads) + 1])  # the data holds 5 values
    with pytest.raises(InferenceServerException) as raised:
        client.infer("lead_lr", inputs)
    assert raised.value.status() == "400"
    assert raised.value.message() == f"input {inputs[1].name()!r}: shape [6] holds 6 values, 'data' has 5"


def test_an_unknown_requested_output_is_400_before_scoring(client, leads):
    inputs = tensors(leads, fields_of(client, "lead_lr", "1.0.0"))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("lead_lr", inputs, outputs=[triton.InferRequestedOutput("scroe")])
    assert raised.value.status() == "400" and "has no output 'scroe'" in raised.value.message()


def test_scoring_responses_say_where_the_time_went(server, client, leads):
    stage = re.compile(r"(\w+);dur=(\d+\.\d{3})")
    response = httpx.post(server.url + "/score", json=leads, timeout=60)
    timing = dict((k, float(v)) for k, v in stage.findall(response.headers["server-timing"]))
    # a request of fewer records than --batch-max-size waits for its batch (queue), however briefly
    assert list(timing) == ["parse", "check", "queue", "score", "serialise", "total"]
    assert sum(v for k, v in timing.items() if k != "total") <= timing["total"]
    lead = leads[0]
    infer = httpx.post(server.url + "/v2/models/lead_lr/infer", timeout=60, json={
        "inputs": [{"name": "id", "shape": [1], "datatype": "BYTES", "data": [lead["id"]]},
                   *({"name": k, "shape": [1], "datatype": "BYTES", "data": [v]} for k, v in lead["data"].items())]})
    assert [k for k, _ in stage.findall(infer.headers["server-timing"])] == ["parse", "check", "queue", "score",
                                                                             "serialise", "total"]
    assert "server-timing" not in httpx.get(server.url + "/models").headers
    text = httpx.get(server.url + "/metrics").text
    counts = {(s.labels["path"], s.labels["stage"]): s.value for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == "mlsm_serve_stage_seconds_count"}
    assert counts[("/score", "score")] >= 1 and counts[("/v2/models/{name}/infer", "parse")] >= 1
    assert set(stage for _, stage in counts) == {"parse", "check", "queue", "score", "serialise"}


def test_an_infer_body_whose_binary_data_is_cut_short_is_400(server):
    head = b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}]}'
    response = httpx.post(server.url + "/v2/models/lead_lr/infer", content=head + b"\0" * 8,
                          headers={"Inference-Header-Content-Length": str(len(head))})
    assert response.status_code == 400
    assert response.json() == {"error": "input 'x': binary_data_size 16 runs past the body's binary data "
                                        "(8 bytes left)"}
    gzip = httpx.post(server.url + "/score", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert gzip.status_code == 415

