"""`mlsm-nb serve` over the example lead models, driven over HTTP: endpoints, bad input, tokens."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NOTEBOOKS, write_notebook
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.extract import extract_bundle
from servers import ServeServer

pytestmark = pytest.mark.slow
MLSM_NB = str(Path(sys.executable).with_name("mlsm-nb"))


@pytest.fixture(scope="module")
def lead_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("leads") / "bundle"
    extract_bundle([NOTEBOOKS], out)
    return out


@pytest.fixture(scope="module")
def server(lead_bundle):
    server = ServeServer(lead_bundle, "--max-body", "4000000", "--max-records", "5000",
                         "--body-timeout", "5").start()
    yield server
    server.stop()


def post(server, path, body, headers=None):
    return httpx.post(server.url + path, content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      headers={"content-type": "application/json", **(headers or {})}, timeout=60)


def test_one_record_scores_with_every_model_names_the_bundle_and_marks_drafts(server):
    lead = next(generate_leads(1))
    response = post(server, "/score", lead)
    assert response.status_code == 200
    body = response.json()
    health = httpx.get(server.url + "/health").json()
    assert body["bundle"] == response.headers["x-mlsm-bundle"] == health["bundle"]["sha256"]
    (document,) = body["documents"]
    assert document["id"] == lead["id"] and document["_current"] == 0
    assert set(document["results"]) == {"lead_lr", "lead_rules", "champion"}
    assert document["results"]["lead_rules"]["2.0.0"]["_status"] == "draft"
    assert body["draft"] == ["lead_rules@2.0.0"]
    reasons = document["results"]["lead_lr"]["1.0.0"]["_reasons"]  # why, with the score
    assert len(reasons) == 3 and set(reasons[0]) == {"field", "contribution"}
    assert [abs(r["contribution"]) for r in reasons] == sorted((abs(r["contribution"]) for r in reasons), reverse=True)


def test_served_results_equal_a_batch_run_with_the_same_bundle(server, lead_bundle, tmp_path):
    leads = list(generate_leads(300, seed=7))
    leads[3]["data"]["email_clicks"] = "many"  # bad_type
    del leads[5]["data"]["job_title"]  # missing_field
    records = tmp_path / "leads.jsonl"
    records.write_text("".join(json.dumps(lead) + "\n" for lead in leads))
    run = subprocess.run([MLSM_NB, "run", str(NOTEBOOKS), "--records", str(records), "--engine", "inprocess",
                          "--bundle", str(lead_bundle), "--out", str(tmp_path / "runs"), "--run-id", "batch",
                          "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from mlsm_nb import read_results

    batch = {doc["id"]: doc["results"] for doc in read_results(tmp_path / "runs" / "batch")}
    served = {doc["id"]: doc["results"] for doc in post(server, "/score", leads).json()["documents"]}
    assert served == batch
    assert served[leads[3]["id"]]["lead_lr"]["1.0.0"]["_error_kind"] == "bad_type"
    one_by_one = {lead["id"]: post(server, "/score", lead).json()["documents"][0]["results"] for lead in leads[:20]}
    assert one_by_one == {lead["id"]: batch[lead["id"]] for lead in leads[:20]}


def test_models_list_and_detail_give_provenance_schema_and_parameters(server):
    listing = httpx.get(server.url + "/models").json()
    keys = {(m["name"], m["version"]): m for m in listing["models"]}
    assert set(keys) == {("lead_lr", "1.0.0"), ("lead_rules", "1.0.0"), ("lead_rules", "2.0.0"), ("champion", "1.0.0")}
    assert keys["champion", "1.0.0"]["kind"] == "summary" and keys["lead_rules", "2.0.0"]["draft"] is True
    assert len(keys["lead_lr", "1.0.0"]["provenance"]["sha256"]) == 64
    detail = httpx.get(server.url + "/models/lead_rules/1.0.0").json()
    assert detail["fields"]["properties"]["email_opens"] == {"type": "integer", "minimum": 0}
    assert "job_title" in detail["fields"]["required"]
    champion = httpx.get(server.url + "/models/champion/1.0.0").json()
    assert champion["parameters"] == {"threshold": 0.5}


def test_unknown_model_is_404_with_one_line(server):
    for path in ("/models/nope/1.0.0", "/models/lead_lr/9.9", "/v2/models/nope",
                 "/v2/models/lead_lr/versions/2.0.0"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404, path
        assert "\n" not in response.json()["error"]
    # without a version, the protocol's model is the only active one
    assert httpx.get(server.url + "/v2/models/lead_rules").json()["versions"] == ["1.0.0", "2.0.0"]
    assert httpx.post(server.url + "/v2/models/nope/infer", json={"inputs": []}).status_code == 404
    assert httpx.get(server.url + "/no/such/path").status_code == 404


def test_metrics_count_requests_records_and_errors_by_model_version_kind(server):
    lead = next(generate_leads(1, seed=3))
    lead["id"] = "metrics-bad"
    lead["data"]["site_visits"] = -1
    post(server, "/score", lead)
    text = httpx.get(server.url + "/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["mlsm_serve_record_errors_total", (("kind", "bad_value"), ("model", "lead_lr"),
                                                      ("version", "1.0.0"))] >= 1
    assert samples["mlsm_serve_records_total", (("model", "champion"), ("version", "1.0.0"))] >= 1
    assert samples["mlsm_serve_requests_total", (("method", "POST"), ("path", "/score"), ("status", "200"))] >= 1
    assert any(name == "mlsm_serve_request_seconds_bucket" for name, _ in samples)


def test_open_inference_protocol_metadata_and_infer(server):
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(server.url + "/v2").json()["name"] == "mlsm-nb"
    meta = httpx.get(server.url + "/v2/models/lead_lr").json()
    assert meta["versions"] == ["1.0.0"]
    assert {"name": "trial_signup", "datatype": "BOOL", "shape": [-1]} in meta["inputs"]
    assert httpx.get(server.url + "/v2/models/lead_rules/versions/2.0.0/ready").json()["ready"] is True
    leads = list(generate_leads(3, seed=5))
    fields = [i["name"] for i in httpx.get(server.url + "/v2/models/champion/versions/1.0.0").json()["inputs"]]
    assert fields == []  # the summary reads its models' results
    names = sorted({k for lead in leads for k in lead["data"]})
    request = {"id": "req-1", "inputs": [
        {"name": "id", "datatype": "BYTES", "shape": [3], "data": [lead["id"] for lead in leads]},
        *({"name": n, "datatype": "BYTES", "shape": [3], "data": [lead["data"][n] for lead in leads]} for n in names)]}
    response = httpx.post(server.url + "/v2/models/champion/versions/1.0.0/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "champion" and body["id"] == "req-1"
    assert body["parameters"]["bundle"] == response.headers["x-mlsm-bundle"]
    outputs = {o["name"]: o for o in body["outputs"]}
    batch = post(server, "/score", leads).json()["documents"]
    assert outputs["score"]["data"] == [d["results"]["champion"]["1.0.0"]["score"] for d in batch]
    assert outputs["score"]["datatype"] == "FP64" and outputs["score"]["shape"] == [3]
    bad = httpx.post(server.url + "/v2/models/lead_lr/infer", json={"inputs": [{"name": "a", "data": 1}]})
    assert bad.status_code == 400 and "'data' must be a list" in bad.json()["error"]


def test_an_infer_input_whose_shape_does_not_hold_its_data_is_400_naming_it(server):
    leads = list(generate_leads(2, seed=6))
    inputs = [{"name": n, "datatype": "BYTES", "shape": [2], "data": [lead["data"][n] for lead in leads]}
              for n in leads[0]["data"]]
    assert httpx.post(server.url + "/v2/models/lead_lr/infer", json={"inputs": inputs}).status_code == 200
    inputs[1] = {**inputs[1], "shape": [3]}  # 2 values: scored as 2 rows before shapes were checked
    response = httpx.post(server.url + "/v2/models/lead_lr/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert response.json() == {"error": f"input {inputs[1]['name']!r}: shape [3] holds 3 values, 'data' has 2"}
    inputs[1] = {**inputs[1], "shape": [1, 2]}
    response = httpx.post(server.url + "/v2/models/lead_lr/infer", json={"inputs": inputs})
    assert response.status_code == 400 and "one value per row" in response.json()["error"]


def test_every_route_is_counted_under_its_own_path(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/lead_lr", "/v2/models/lead_lr/ready",
                 "/v2/models/lead_rules/versions/2.0.0"):
        assert httpx.get(server.url + path).status_code == 200, path
    text = httpx.get(server.url + "/metrics").text
    counted = {s.labels["path"] for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "mlsm_serve_requests_total"}
    assert {"/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
            "/v2/models/{name}/versions/{version}"} <= counted


# --- bad input ---------------------------------------------------------------

def test_malformed_json_is_400_with_one_line(server):
    response = post(server, "/score", b'{"id": 1, "data": {')
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ") and "\n" not in response.json()["error"]
    assert post(server, "/score", b"").status_code == 400
    assert "got int" in post(server, "/score", b"42").json()["error"]


def test_record_without_id_is_400_alone_and_rejected_in_a_list(server):
    response = post(server, "/score", {"data": {"x": 1}})
    assert response.status_code == 400 and response.json() == {"error": "record not scored: has no id field 'id'"}
    leads = list(generate_leads(2, seed=9))
    response = post(server, "/score", [leads[0], {"data": {}}, leads[1], {"id": 5, "data": "x"}])
    body = response.json()
    assert response.status_code == 200
    assert [d["id"] for d in body["documents"]] == [leads[0]["id"], leads[1]["id"]]
    assert body["rejected"] == [{"position": 1, "id": None, "reason": "has no id field 'id'"},
                                {"position": 3, "id": 5, "reason": "'data' must be a mapping, got str"}]


def test_a_duplicate_in_a_body_is_named_by_its_position(server):
    leads = list(generate_leads(2, seed=12))
    response = post(server, "/score", [leads[0], leads[1], leads[0]])
    assert response.status_code == 200
    assert response.json()["rejected"] == [{"position": 2, "id": leads[0]["id"],
                                            "reason": f"duplicate id {leads[0]['id']!r} (first at position 0)"}]


def test_wrong_types_become_per_model_errors_as_in_batch_runs(server):
    lead = next(generate_leads(1, seed=11))
    lead["data"]["trial_signup"] = "yes"
    results = post(server, "/score", lead).json()["documents"][0]["results"]
    assert results["lead_lr"]["1.0.0"] == {"_error": "field 'trial_signup': expected bool, got str 'yes'",
                                          "_error_kind": "bad_type"}
    assert results["champion"]["1.0.0"]["_error_kind"] == "missing_dependency"


def test_a_list_of_100000_records_is_413_and_the_server_goes_on(server):
    records = [{"id": i, "data": {}} for i in range(100_000)]
    response = post(server, "/score", records)
    assert response.status_code == 413
    assert response.json()["error"] == "100,000 records in one request; the limit is 5,000 (split the list)"
    assert post(server, "/score", next(generate_leads(1))).status_code == 200


def test_a_huge_body_is_413_declared_or_streamed(server):
    huge = b"[" + b",".join([b'{"id": 1, "data": {"pad": "' + b"x" * 1000 + b'"}}'] * 5000) + b"]"
    response = post(server, "/score", huge)
    assert response.status_code == 413 and "over the limit of 4,000,000 bytes" in response.json()["error"]

    def chunks():
        for _ in range(500):
            yield b" " * 10_000

    streamed = httpx.post(server.url + "/score", content=chunks(), timeout=60)
    assert streamed.status_code == 413
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_slow_client_gets_408_and_does_not_hold_up_others(server):
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"id\": ")
        assert post(server, "/score", next(generate_leads(1))).status_code == 200
        waiting, _, _ = select.select([slow], [], [], 0)
        assert waiting == []  # answered while the slow client was still being waited for
        slow.settimeout(30)
        answer = b""
        while b"did not arrive" not in answer and (chunk := slow.recv(4096)):  # headers and body may come apart
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408")
    assert "did not arrive within 5 s" in answer


def test_a_model_output_that_is_not_json_is_that_records_bad_output(tmp_path):
    cells = [("version", 'name = "odd"\nversion = "1"\nstatus = "active"'), ("fields", "fields = {}"),
             ("score", "def score(data, results):\n    return {'thing': object()}")]
    bundle = tmp_path / "bundle"
    extract_bundle([write_notebook(tmp_path / "nb" / "odd.ipynb", cells)], bundle)
    server = ServeServer(bundle).start()
    try:
        response = post(server, "/score", {"id": 1, "data": {}})
        assert response.status_code == 200, response.text  # as in batch runs: the record's error, not the server's
        entry = response.json()["documents"][0]["results"]["odd"]["1"]
        assert entry["_error_kind"] == "bad_output" and "Traceback" not in response.text
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_a_record_over_the_record_timeout_is_answered_as_a_timeout_and_a_stuck_thread_replaced(tmp_path):
    cells = [("version", 'name = "napper"\nversion = "1"\nstatus = "active"'), ("fields", 'fields = {"x": int}'),
             ("setup", "import time"),
             ("score", "def score(data, results):\n"
                       "    if data['x'] == 3:\n        time.sleep(60)  # in a thread: no interrupt ends it\n"
                       "    while data['x'] == 5:\n        pass  # Python code: interrupted\n"
                       "    return {'score': data['x'] / 10}")]
    bundle = tmp_path / "bundle"
    extract_bundle([write_notebook(tmp_path / "nb" / "napper.ipynb", cells)], bundle)
    server = ServeServer(bundle, "--record-timeout", "1").start()
    try:
        started = time.monotonic()
        response = post(server, "/score", [{"id": x, "data": {"x": x}} for x in (1, 3, 5, 7)])
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 20  # not the 60 s sleep: 1 s + the grace, 1 s, then scored again
        entries = {d["id"]: d["results"]["napper"]["1"] for d in response.json()["documents"]}
        assert entries[1] == {"score": 0.1, "_status": "active"} and entries[7]["score"] == 0.7
        assert entries[5] == {"_error": "score ran over the per-record time limit of 1 s (--record-timeout)",
                              "_error_kind": "timeout"}
        assert entries[3]["_error_kind"] == "timeout" and "stuck where no interrupt reached it" in entries[3]["_error"]
        started = time.monotonic()
        again = post(server, "/score", {"id": 9, "data": {"x": 9}})  # the service goes on, in a new thread
        assert again.json()["documents"][0]["results"]["napper"]["1"]["score"] == 0.9
        assert time.monotonic() - started < 5
        metrics = httpx.get(server.url + "/metrics").text
        assert 'mlsm_serve_record_errors_total{kind="timeout",model="napper",version="1"} 2.0' in metrics
        assert "its scoring thread was replaced" in server.output()
    finally:
        server.stop()


def test_bearer_token_guards_everything_but_the_health_endpoints(lead_bundle):
    server = ServeServer(lead_bundle, env={"MLSM_SERVE_TOKEN": "s3cret-token"}).start()
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
        assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
        for method, path in (("GET", "/models"), ("GET", "/metrics"), ("POST", "/score"), ("POST", "/admin/reload"),
                             ("GET", "/api/live"), ("GET", "/v2/models/lead_lr"), ("GET", "/v2"),
                             ("POST", "/outcomes?label=converted")):
            response = httpx.request(method, server.url + path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(server.url + "/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(server.url + "/models", headers=good).status_code == 200
        assert post(server, "/score", next(generate_leads(1)), headers=good).status_code == 200
    finally:
        server.stop()
    assert "s3cret-token" not in server.output()


def test_binds_to_loopback_by_default(server):
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"]  # state LISTEN
    assert f"0100007F:{server.port:04X}" in listening  # 127.0.0.1 only
    assert f"on http://127.0.0.1:{server.port} " in server.output()


def test_two_workers_serve_and_add_up_their_metrics(lead_bundle):
    server = ServeServer(lead_bundle, "--workers", "2").start()
    try:
        leads = list(generate_leads(40, seed=2))
        with httpx.Client(timeout=30) as client:
            for lead in leads:
                assert client.post(server.url + "/score", json=lead).status_code == 200
        text = httpx.get(server.url + "/metrics").text
        totals = {s.labels["model"]: s.value for family in text_string_to_metric_families(text)
                  for s in family.samples if s.name == "mlsm_serve_records_total" and s.labels["version"] == "1.0.0"}
        assert totals["lead_lr"] == 40
    finally:
        server.stop()


def test_an_infer_row_the_server_rejects_keeps_its_place_in_every_output(server):
    leads = list(generate_leads(3, seed=7))
    ids = [leads[0]["id"], leads[0]["id"], leads[2]["id"]]  # the second row repeats the first's id
    request = {"inputs": [{"name": "id", "datatype": "BYTES", "shape": [3], "data": ids},
                          *({"name": n, "datatype": "BYTES", "shape": [3], "data": [lead["data"][n] for lead in leads]}
                            for n in leads[0]["data"])]}
    response = httpx.post(server.url + "/v2/models/lead_lr/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert all(o["shape"] == [3] for o in outputs.values())
    alone = post(server, "/score", [leads[0], leads[2]]).json()["documents"]
    expected = [d["results"]["lead_lr"]["1.0.0"]["score"] for d in alone]
    assert outputs["score"]["data"] == [expected[0], None, expected[1]]
    assert outputs["_error_kind"]["data"] == [None, "rejected", None]
    assert ids[1] in outputs["_error"]["data"][1]
    assert [r["position"] for r in body["parameters"]["rejected"]] == [1]
