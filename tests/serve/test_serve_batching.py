"""Adaptive batching (serve.batching): concurrent requests scored together, each answered as if alone.

The app is driven in this process through ASGI (no sockets, no server); the tests that start a server are
marked slow.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NOTEBOOKS
from mlsm_nb.core.batch import BatchOutcome
from mlsm_nb.leads import generate_leads
from mlsm_nb.notebook.extract import extract_bundle
from mlsm_nb.serve.app import ServeSettings, create_app
from mlsm_nb.serve.batching import Batcher
from servers import ServeServer


@pytest.fixture(scope="module")
def lead_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("leads") / "bundle"
    extract_bundle([NOTEBOOKS], out)
    return out


def requests_of_every_kind() -> list[tuple[str, bytes]]:
    """(path, body) of one-record and several-record requests, bad records, bad bodies and infer requests."""
    leads = list(generate_leads(40, seed=11))
    leads[1]["data"]["email_clicks"] = "many"  # bad_type
    del leads[2]["data"]["job_title"]  # missing_field
    leads[3]["data"]["site_visits"] = -4  # bad_value
    leads[4]["data"] = {"lead_lr": {"1.0.0": leads[4]["data"]}, **leads[4]["data"]}  # nested for one model
    out = [("/score", json.dumps(lead).encode()) for lead in leads[:20]]
    out += [("/score", json.dumps(leads[i:i + 3]).encode()) for i in range(20, 35, 3)]
    out.append(("/score", json.dumps([leads[35], {"data": {}}, leads[35], leads[36]]).encode()))  # no id, duplicate
    out.append(("/score", json.dumps({"data": leads[37]["data"]}).encode()))  # one record without an id: 400
    out.append(("/score", b'{"id": 1, "data": {'))
    out.append(("/score", b"42"))
    fields = ["email_clicks", "site_visits", "trial_signup", "webinar_attended", "job_title", "company_size",
              "days_since_last_activity"]
    for model in ("lead_lr", "champion"):
        rows = leads[5:9]
        infer = {"id": f"infer-{model}", "inputs": [{"name": "id", "datatype": "BYTES", "shape": [4],
                                                     "data": [r["id"] for r in rows]}]
                 + [{"name": f, "shape": [4], "data": [r["data"].get(f) for r in rows]} for f in fields]}
        out.append((f"/v2/models/{model}/infer", json.dumps(infer).encode()))
    return out


def comparable(response: httpx.Response) -> tuple:
    """A response without what differs from one call to the next (the documents' `_timestamp`)."""
    body = response.json()
    for document in body.get("documents", ()):
        document.pop("_timestamp")
    return response.status_code, response.headers["x-mlsm-bundle"], body


def samples(app) -> dict:
    text = app.state.metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def send_all(app, requests: list[tuple[str, bytes]]) -> list[httpx.Response]:
    """Every request at once, as concurrent clients would."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
        return await asyncio.gather(*(client.post(path, content=body, headers={"content-type": "application/json"})
                                      for path, body in requests))


def test_batched_and_unbatched_serving_give_identical_responses(lead_bundle):
    requests = requests_of_every_kind()
    batched = create_app(ServeSettings(str(lead_bundle), batch_max_size=16))
    alone = create_app(ServeSettings(str(lead_bundle), batch_max_size=1))
    one_at_a_time = []
    for request in requests:
        one_at_a_time += asyncio.run(send_all(alone, [request]))
    together = asyncio.run(send_all(batched, requests))
    assert [comparable(r) for r in together] == [comparable(r) for r in one_at_a_time]
    statuses = [r.status_code for r in together]
    assert statuses.count(400) == 3 and statuses.count(200) == len(requests) - 3
    lead_lr = [r.json()["documents"][0]["results"]["lead_lr"]["1.0.0"] for r in together[:4]]
    assert [e.get("_error_kind") for e in lead_lr] == [None, "bad_type", "missing_field", "bad_value"]
    counts = samples(batched)
    # the batches really held several requests (infer requests of another plan batch apart)
    assert counts["mlsm_serve_batch_requests_count", ()] < len(requests) / 4
    assert counts["mlsm_serve_batch_requests_sum", ()] == len(requests) - 3
    assert samples(alone)["mlsm_serve_batch_requests_count", ()] == 0
    assert counts["mlsm_serve_records_total", (("model", "lead_lr"), ("version", "1.0.0"))] == \
        samples(alone)["mlsm_serve_records_total", (("model", "lead_lr"), ("version", "1.0.0"))]


def test_a_batch_that_fills_while_one_request_is_malformed_fails_only_that_request(lead_bundle):
    leads = list(generate_leads(12, seed=4))
    requests = [("/score", json.dumps(lead).encode()) for lead in leads[:5]]
    requests.insert(2, ("/score", b'{"id": "x", "data": {'))
    requests.insert(4, ("/score", json.dumps({"id": "y", "data": "not an object"}).encode()))
    requests.append(("/score", json.dumps(leads[5:12]).encode()))  # 7 records: over the size, scored alone
    app = create_app(ServeSettings(str(lead_bundle), batch_max_size=3))
    responses = asyncio.run(send_all(app, requests))
    assert [r.status_code for r in responses] == [200, 200, 400, 200, 400, 200, 200, 200]
    assert responses[2].json()["error"].startswith("malformed JSON: ")
    assert responses[4].json()["error"] == "record not scored: 'data' must be a mapping, got str"
    good = [r for r in responses if r.status_code == 200]
    expected = create_app(ServeSettings(str(lead_bundle), batch_max_size=1))
    assert [comparable(r) for r in good] == \
        [comparable(r) for r in asyncio.run(send_all(expected, [q for q, r in zip(requests, responses,
                                                                                    strict=True)
                                                                 if r.status_code == 200]))]
    counts = samples(app)
    assert counts["mlsm_serve_batch_requests_sum", ()] == 5  # five one-record requests in batches of at most 3
    assert counts["mlsm_serve_batch_requests_bucket", (("le", "2.0"),)] < counts["mlsm_serve_batch_requests_count", ()]


# --- the batcher's rules, with a score function that records what it was given -------------------------------

def fake_plan(*names: str) -> tuple:
    return tuple(SimpleNamespace(key=(name, "1")) for name in names)


class Recorder:
    """A score function: every record's entry is its `data`; remembers each batch; raises on `poison`."""

    def __init__(self):
        self.batches: list[tuple[object, list]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, bundle, plan, records):
        self.batches.append((bundle, [r["id"] for r in records]))
        await self.gate.wait()
        if any(r["data"] == "poison" for r in records):
            raise ValueError("poisoned")
        return [BatchOutcome(m.key[0], m.key[1], [{"bundle": bundle.name, "x": r["data"]} for r in records])
                for m in plan]


def records(*ids) -> list[dict]:
    return [{"id": i, "data": i} for i in ids]


def test_a_batch_that_raises_scores_each_request_alone_and_only_the_culprit_fails():
    async def run():
        score = Recorder()
        batcher = Batcher(score, max_size=10, max_latency=1.0)
        bundle, plan = SimpleNamespace(name="a"), fake_plan("m")
        poisoned = [{"id": "p", "data": "poison"}]
        results = await asyncio.gather(batcher.score(bundle, plan, records(1, 2)),
                                       batcher.score(bundle, plan, poisoned),
                                       batcher.score(bundle, plan, records(3)), return_exceptions=True)
        return score.batches, results

    batches, (first, poisoned, third) = asyncio.run(run())
    assert [ids for _, ids in batches] == [[1, 2, "p", 3], [1, 2], ["p"], [3]]
    assert [e["x"] for e in first[0][0].entries] == [1, 2] and [e["x"] for e in third[0][0].entries] == [3]
    assert isinstance(poisoned, ValueError)


def test_a_request_cancelled_while_it_waits_is_left_out_of_its_batch():
    async def run():
        score = Recorder()
        batcher = Batcher(score, max_size=10, max_latency=5.0)
        score.gate.clear()  # the first batch is being scored: the next requests wait for the scorer
        bundle, plan = SimpleNamespace(name="a"), fake_plan("m")
        busy = asyncio.ensure_future(batcher.score(bundle, plan, records(0)))
        await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(batcher.score(bundle, plan, records(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        waiting[1].cancel()  # its client went away
        score.gate.set()
        answers = await asyncio.gather(busy, waiting[0], waiting[2])
        return score.batches, answers, waiting[1].cancelled()

    batches, answers, cancelled = asyncio.run(run())
    assert [ids for _, ids in batches] == [[0], [1, 3]]
    assert [[e["x"] for e in outcomes[0].entries] for outcomes, _ in answers] == [[0], [1], [3]]
    assert cancelled
    assert answers[1][1] >= 0.01  # it waited for the scorer, and says how long


def test_a_swap_while_batches_are_queued_keeps_each_batch_on_its_own_bundle():
    async def run():
        score = Recorder()
        batcher = Batcher(score, max_size=100, max_latency=1.0)
        old, new, plan = SimpleNamespace(name="old"), SimpleNamespace(name="new"), fake_plan("m", "n")
        score.gate.clear()
        busy = asyncio.ensure_future(batcher.score(old, plan, records(0)))
        await asyncio.sleep(0.01)
        before = [asyncio.ensure_future(batcher.score(old, plan, records(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        after = [asyncio.ensure_future(batcher.score(new, plan, records(i))) for i in (3, 4)]  # swapped meanwhile
        other_plan = asyncio.ensure_future(batcher.score(new, fake_plan("n"), records(5)))
        await asyncio.sleep(0.01)
        score.gate.set()
        return score.batches, await asyncio.gather(busy, *before, *after, other_plan)

    batches, answers = asyncio.run(run())
    assert [(bundle.name, ids) for bundle, ids in batches] == [("old", [0]), ("old", [1, 2]), ("new", [3, 4]),
                                                               ("new", [5])]
    assert [{e["bundle"] for o in outcomes for e in o.entries} for outcomes, _ in answers] == \
        [{"old"}] * 3 + [{"new"}] * 3


def test_a_full_batch_goes_at_once_and_a_lone_request_does_not_wait_for_the_latency_bound():
    async def run():
        score = Recorder()
        batcher = Batcher(score, max_size=4, max_latency=30.0)
        bundle, plan = SimpleNamespace(name="a"), fake_plan("m")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(batcher.score(bundle, plan, records(i)) for i in range(6)))
        full = loop.time() - started
        started = loop.time()
        _, waited = await batcher.score(bundle, plan, records(9))
        return score.batches, full, loop.time() - started, waited

    batches, full, lone, waited = asyncio.run(run())
    assert [ids for _, ids in batches] == [[0, 1, 2, 3], [4, 5], [9]]
    assert full < 1 and lone < 1 and waited < 1


def test_the_latency_bound_releases_a_batch_while_the_scorer_is_busy():
    async def run():
        score = Recorder()
        batcher = Batcher(score, max_size=100, max_latency=0.05)
        score.gate.clear()
        bundle, plan = SimpleNamespace(name="a"), fake_plan("m")
        busy = asyncio.ensure_future(batcher.score(bundle, plan, records(0)))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.score(bundle, plan, records(1)))
        await asyncio.sleep(0.2)
        seen = [ids for _, ids in score.batches]  # the second batch went to the scorer at its bound
        score.gate.set()
        await asyncio.gather(busy, queued)
        return seen

    assert asyncio.run(run()) == [[0], [1]]


# --- over HTTP, with real servers ------------------------------------------------------------------------------

def post_all(url: str, requests: list[tuple[str, bytes]], clients: int = 8) -> list[httpx.Response]:
    """The requests sent by `clients` threads at once; responses in request order."""
    responses: list = [None] * len(requests)
    lock = threading.Lock()
    pending = list(enumerate(requests))

    def client():
        with httpx.Client(timeout=30) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    i, (path, body) = pending.pop(0)
                responses[i] = http.post(url + path, content=body, headers={"content-type": "application/json"})

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.slow
def test_a_batching_server_answers_as_a_server_without_batching(lead_bundle):
    batched = ServeServer(lead_bundle, "--batch-max-size", "8").start()
    alone = ServeServer(lead_bundle, "--batch-max-size", "1").start()
    try:
        requests = requests_of_every_kind() * 3
        answers = post_all(batched.url, requests, clients=16)
        assert [comparable(r) for r in answers] == [comparable(r) for r in post_all(alone.url, requests, clients=1)]
        metrics = httpx.get(batched.url + "/metrics").text
        assert "mlsm_serve_batch_requests_count" in metrics
    finally:
        batched.stop()
        alone.stop()


@pytest.mark.slow
def test_clients_that_disconnect_while_their_requests_wait_do_not_disturb_the_others(lead_bundle):
    server = ServeServer(lead_bundle).start()
    try:
        leads = list(generate_leads(60, seed=12))
        gone = threading.Event()

        def hang_up():
            for lead in leads[40:]:
                body = json.dumps(lead).encode()
                with socket.create_connection(("127.0.0.1", server.port)) as raw:
                    raw.sendall(b"POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                b"content-length: %d\r\n\r\n%s" % (len(body), body))
            gone.set()

        thread = threading.Thread(target=hang_up)
        thread.start()
        answers = post_all(server.url, [("/score", json.dumps(lead).encode()) for lead in leads[:40]], clients=8)
        thread.join()
        assert gone.is_set()
        assert [r.status_code for r in answers] == [200] * 40
        assert [r.json()["documents"][0]["id"] for r in answers] == [lead["id"] for lead in leads[:40]]
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
        assert httpx.post(server.url + "/score", json=leads[0]).status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in server.output()
