"""serve's outcomes without a server: per-record checks, joining to scores, bounds, workers sharing figures,
the outcome buffer's limit and its retry."""

from __future__ import annotations

import time

import pytest

from mlsm_nb.audit.outcomes import OutcomeError, check_outcome
from mlsm_nb.serve import outcomes as live_outcomes
from mlsm_nb.serve.outcomes import LiveOutcomes
from mlsm_nb.serve.storage import OutcomeBuffer


def documents(scores: dict, model=("m", "1")) -> list[dict]:
    return [{"id": i, "results": {model[0]: {model[1]: {"score": s}}}} for i, s in scores.items()]


def pairs_auc(scores, labels) -> float:
    """AUC by counting pairs (an independent check of audit.metrics.auc's rank formula)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_check_outcome_names_the_id_and_the_field():
    assert check_outcome({"id": 7, "converted": "TRUE"}, "converted", where="w", source="s")["value"] == 1
    cases = [({"converted": 1}, None, "id"), ({"id": "a", "converted": 2}, "a", "converted"),
             ({"id": "a"}, "a", "converted"), ({"id": "a", "converted": 1, "observed_at": "soon"}, "a", "observed_at")]
    for row, record_id, field in cases:
        with pytest.raises(OutcomeError) as caught:
            check_outcome(row, "converted", where="at position 3", source="s")
        assert (caught.value.record_id, caught.value.field) == (record_id, field)
        assert str(caught.value).startswith("at position 3")


def test_bad_records_are_refused_one_by_one_and_the_rest_joined_to_their_scores():
    live = LiveOutcomes()
    scores = {i: i / 10 for i in range(10)}
    live.remember_scores(documents(scores))
    labels = {i: int(i in (3, 6, 8, 9)) for i in range(10)}
    records = [{"id": i, "converted": y} for i, y in labels.items()]
    records[4:4] = [{"id": 1, "converted": 1}, {"id": 2, "converted": 1.0}, "text", {"id": "x", "converted": 0}]
    accepted, refused = live.check(records, "converted")
    assert [(r["position"], r["id"], r["field"]) for r in refused] == [(4, 1, "id"), (5, 2, "converted"),
                                                                      (6, None, None)]
    assert "earlier in this request" in refused[0]["reason"]
    assert live.accept(accepted, len(refused)) == ["x"]  # kept, but never scored here
    figures = live.figures()["m@1"]["converted"]
    assert figures["records"] == 10 and figures["converted"] == 4 and figures["conversion"] == 0.4
    assert figures["auc"] == pytest.approx(pairs_auc(list(scores.values()), list(labels.values())))
    again, refused = live.check([{"id": 3, "converted": 0}, {"id": 3, "converted": 1}], "converted")
    assert again == [] and all("posted before" in r["reason"] for r in refused)
    assert live.status() == {"accepted": 11, "refused": 3, "unscored": 1, "dropped": 0, "kept": "memory",
                             "held": 11, "limit": live_outcomes.MEMORY_KEPT}


def test_everything_kept_is_bounded(monkeypatch):
    for name, size in (("SCORES_KEPT", 50), ("MEMORY_KEPT", 40), ("SEEN_KEPT", 30), ("LABELS_KEPT", 2)):
        monkeypatch.setattr(live_outcomes, name, size)
    live = LiveOutcomes(window=20)
    live.memory = type(live.memory)(maxlen=40)
    live.remember_scores(documents({i: float(i) for i in range(200)}))
    accepted, _ = live.check([{"id": i, "converted": i % 2} for i in range(100, 200)], "converted")
    live.accept(accepted, 0)
    assert len(live._scores) == 50 and len(live._seen) == 30 and len(live.memory) == 40
    assert live.status()["dropped"] == 60 and live.status()["unscored"] == 50  # ids 100-149 were forgotten
    assert live.figures()["m@1"]["converted"]["records"] == 20  # the rolling window
    for label in ("paid", "churned"):  # a third label drops the one posted to longest ago
        live.accept(live.check([{"id": 199, label: 1}], label)[0], 0)
    assert sorted(live.figures()["m@1"]) == ["churned", "paid"]


def test_workers_join_each_others_outcomes_and_show_the_same_figures(tmp_path):
    scorer, poster = (LiveOutcomes(shared_dir=str(tmp_path), worker=w) for w in ("a", "b"))
    scorer.remember_scores(documents({i: i / 10 for i in range(6)}))
    accepted, _ = poster.check([{"id": i, "converted": int(i > 2)} for i in range(6)], "converted")
    assert poster.accept(accepted, 0) == list(range(6))  # the other worker scored them
    poster._publish()
    scorer._publish()  # joins them to its scores
    scorer._publish()
    for worker in (scorer, poster):
        assert worker.figures()["m@1"]["converted"] == {"records": 6, "converted": 3, "conversion": 0.5,
                                                        "auc": 1.0}


def test_another_workers_file_is_parsed_again_only_once_it_was_replaced(tmp_path, monkeypatch):
    reader, writer = (LiveOutcomes(shared_dir=str(tmp_path), worker=w) for w in ("a", "b"))
    writer.remember_scores(documents({i: i / 10 for i in range(6)}))
    writer.accept(writer.check([{"id": i, "converted": int(i > 2)} for i in range(3)], "converted")[0], 0)
    writer._publish()
    parsed, loads = [], live_outcomes.orjson.loads
    monkeypatch.setattr(live_outcomes.orjson, "loads", lambda data: parsed.append(data) or loads(data))
    assert reader.figures()["m@1"]["converted"]["records"] == 3
    assert reader.figures()["m@1"]["converted"]["records"] == 3  # as /metrics asks at every scrape
    assert len(parsed) == 1
    writer.accept(writer.check([{"id": i, "converted": int(i > 2)} for i in range(3, 6)], "converted")[0], 0)
    writer._publish()  # replaces its file
    assert reader.figures()["m@1"]["converted"] == {"records": 6, "converted": 3, "conversion": 0.5, "auc": 1.0}
    assert len(parsed) == 2
    (tmp_path / "outcomes-b.json").unlink()  # a worker gone
    assert reader.figures() == {} and len(parsed) == 2


class FlakySink:
    def __init__(self):
        self.down, self.stored = True, []

    def add_outcomes(self, documents):
        if self.down:
            raise ConnectionError("database down")
        left_out = 0
        for document in documents:  # as MongoDB's unique (id, label) index does
            if any(s["id"] == document["id"] for s in self.stored):
                left_out += 1
            else:
                self.stored.append(document)
        return left_out


def test_outcome_buffer_refuses_past_its_limit_and_stores_the_rest_once_the_database_is_back():
    sink = FlakySink()
    buffer = OutcomeBuffer(lambda: sink, flush_seconds=0.05, retry_seconds=0.05, limit=10)
    try:
        assert buffer.add([{"id": i} for i in range(8)])
        assert not buffer.add([{"id": i} for i in range(8, 11)])  # 11 would wait: refused whole
        assert buffer.add([{"id": 8}, {"id": 0}])  # id 0 again: stored once
        deadline = time.time() + 5
        while not buffer.status()["error"] and time.time() < deadline:
            time.sleep(0.02)
        assert buffer.status()["error"] == "database down" and buffer.pending == 10
        sink.down = False
        while buffer.pending and time.time() < deadline:
            time.sleep(0.02)
        assert buffer.status() | {"error_at": None} == {"pending": 0, "stored": 9, "already_stored": 1,
                                                        "error": None, "error_at": None}
    finally:
        assert buffer.close(1) == 0
