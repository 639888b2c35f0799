"""The per-record time limit in the scoring core: a record over it is a `timeout` entry alone, the batch goes
on, the slowest records are named; in the main thread (SIGALRM) and in other threads (the watchdog)."""

import signal
import threading
import time

import pandas as pd
import pytest

from mlsm_nb.core.batch import score_batch, score_record
from mlsm_nb.core.model import Model, SummaryModel
from mlsm_nb.core.timelimit import FRAME, LIMIT, POSITION, START, Board, RecordTimeout, grace

SLOW = {3, 11}


def napper(data, results):
    """Sleeps on SLOW, spins on 7 (pure Python), swallows the interrupt on 9."""
    if data["x"] in SLOW and threading.current_thread() is threading.main_thread():
        time.sleep(30)
    if data["x"] == 7:
        while True:
            pass
    if data["x"] == 9:
        try:
            time.sleep(30)
        except BaseException:  # noqa: BLE001 - a score that swallows everything
            pass
        return {"score": -1.0}
    return {"score": data["x"] / 100}


def records(count=16):
    return [{"id": i, "data": {"x": i}} for i in range(count)]


def test_a_record_over_the_limit_is_a_timeout_alone_in_the_main_thread():
    started = time.monotonic()
    outcome = score_batch(Model("nap", {"x": int}, "1", napper), records(), limit=0.2)
    assert time.monotonic() - started < 3  # 4 records stopped at about 0.2 s each, not 30 s
    kinds = {i: e.get("_error_kind") for i, e in enumerate(outcome.entries)}
    assert {i for i, kind in kinds.items() if kind == "timeout"} == {3, 7, 9, 11}  # 9 swallowed it: still over
    assert outcome.entries[0] == {"score": 0.0, "_status": "draft"} and outcome.entries[15]["score"] == 0.15
    assert outcome.entries[3]["_error"] == "score ran over the per-record time limit of 0.2 s (--record-timeout)"
    assert {position for position, _ in outcome.slowest[:4]} == {3, 7, 9, 11}
    assert all(0.2 < seconds < 1 for _, seconds in outcome.slowest[:4])
    assert len(outcome.slowest) == 5 and outcome.slowest[4][1] < 0.2  # the fifth slowest is a quick one


def test_an_alarm_set_before_is_called_when_due_and_put_back_with_the_time_it_has_left():
    model = Model("nap", {"x": int}, "1", napper)
    calls = []

    def mine(signum, frame):
        calls.append(time.monotonic())

    previous = signal.signal(signal.SIGALRM, mine)
    saved = signal.setitimer(signal.ITIMER_REAL, 0.3)  # (pytest-timeout's, which this test puts back)
    try:
        started = time.monotonic()
        score_batch(model, records(12), limit=0.2)  # four records of 0.2 s: the alarm comes due while it runs
        assert len(calls) == 1 and 0.3 <= calls[0] - started < 0.6
        assert signal.getsignal(signal.SIGALRM) is mine and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        signal.setitimer(signal.ITIMER_REAL, 30)
        score_batch(model, records(4), limit=0.2)
        assert signal.getsignal(signal.SIGALRM) is mine and 29 < signal.getitimer(signal.ITIMER_REAL)[0] < 29.9
        assert len(calls) == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, *saved)
        signal.signal(signal.SIGALRM, previous)


def test_in_another_thread_python_code_is_interrupted_and_a_late_record_is_still_a_timeout():
    def dozer(data, results):
        if data["x"] == 3:
            time.sleep(1)  # in a thread no interrupt ends a sleep: the record comes back late
        return napper(data, results)

    found = {}

    def work():
        found["outcome"] = score_batch(Model("nap", {"x": int}, "1", dozer), records(12)[2:8], limit=0.2)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    outcome = found["outcome"]
    kinds = [e.get("_error_kind") for e in outcome.entries]  # x = 2..7
    assert kinds == [None, "timeout", None, None, None, "timeout"]  # the spin (7) interrupted; the sleep ran out
    assert dict(outcome.slowest)[1] >= 1 and dict(outcome.slowest)[5] < 1


def test_no_limit_interrupts_nothing():
    def slowish(data, results):
        time.sleep(0.3)
        return {"score": 1.0}

    outcome = score_batch(Model("s", {}, "1", slowish), records(2))
    assert [e["score"] for e in outcome.entries] == [1.0, 1.0] and outcome.slowest[0][1] >= 0.3


def test_records_found_stuck_before_are_timeouts_without_being_scored():
    scored = []

    def counting(data, results):
        scored.append(data["x"])
        return {"score": 1.0}

    outcome = score_batch(Model("c", {"x": int}, "1", counting), records(6), limit=5, stuck={0: 9.0, 4: 12.5})
    assert scored == [1, 2, 3, 5]
    assert [e.get("_error_kind") for e in outcome.entries] == ["timeout", None, None, None, "timeout", None]
    assert "stuck where no interrupt reached it" in outcome.entries[4]["_error"]
    assert outcome.slowest[:2] == [(4, 12.5), (0, 9.0)]


def test_a_frame_over_its_scaled_limit_is_scored_record_by_record_to_find_the_slow_ones():
    def score_frame(frame):
        time.sleep(30)  # the whole frame: far over 16 records x 0.2 s

    model = Model("nap", {"x": int}, "1", napper, score_frame=score_frame)
    started = time.monotonic()
    outcome = score_batch(model, records(), limit=0.2)
    assert time.monotonic() - started < 8  # the frame stopped at 3.2 s, then 4 records at 0.2 s
    assert outcome.method == "score"
    assert "score_frame ran longer than its limit (16 records x 0.2 s)" in outcome.notes[0]
    assert [i for i, e in enumerate(outcome.entries) if e.get("_error_kind") == "timeout"] == [3, 7, 9, 11]


def test_a_frame_within_its_limit_stays_a_frame():
    def score_frame(frame):
        time.sleep(0.3)  # slower than one record's limit, within the frame's
        return pd.DataFrame({"score": frame["x"] / 100}, index=frame.index)

    outcome = score_batch(Model("f", {"x": int}, "1", napper, score_frame=score_frame), records(4), limit=0.2)
    assert outcome.method == "score_frame" and [e["score"] for e in outcome.entries] == [0, 0.01, 0.02, 0.03]


def test_a_frame_found_stuck_before_is_not_tried_again():
    def score_frame(frame):
        raise AssertionError("not tried again")

    model = Model("f", {"x": int}, "1", lambda data, results: {"score": 1.0}, score_frame=score_frame)
    outcome = score_batch(model, records(3), limit=1, stuck={FRAME: 40.0})
    assert outcome.method == "score" and "stuck for 40 s in an earlier attempt" in outcome.notes[0]


def test_a_summary_times_out_per_record_with_its_dependencies():
    summary = SummaryModel("s", [{"name": "nap", "version": "1"}], "1",
                           lambda data, results: napper({"x": round(results["nap"]["1"]["score"] * 100)}, {}))
    entries = [{"score": i / 100, "_status": "draft"} for i in range(5)]
    outcome = score_batch(summary, records(5), {("nap", "1"): entries}, limit=0.2)
    assert [e.get("_error_kind") for e in outcome.entries] == [None, None, None, "timeout", None]


def test_one_record_scores_as_in_a_batch():
    model = Model("nap", {"x": int}, "1", napper)
    assert score_record(model, {"x": 3}, limit=0.2)["_error_kind"] == "timeout"
    assert score_record(model, {"x": 4}, limit=0.2) == {"score": 0.04, "_status": "draft"}


def test_a_board_tells_from_outside_when_a_record_is_stuck_past_its_limit_and_grace():
    board = Board.shared()
    cells = board.cells
    cells[LIMIT], cells[POSITION] = 1.0, 42
    cells[START] = time.monotonic() - 1.5
    assert board.stuck() is None  # over the limit, within the grace: the interrupt may still act
    cells[START] = time.monotonic() - 1.0 - grace(1.0) - 0.1
    stuck = board.stuck()
    assert stuck.position == 42 and stuck.seconds > 1 + grace(1.0)
    cells[START] = 0.0
    assert board.stuck() is None  # no record being scored
    board.close()


def test_the_timeout_is_not_an_exception_a_score_turns_into_score_raised():
    assert not issubclass(RecordTimeout, Exception)
    with pytest.raises(RecordTimeout):
        raise RecordTimeout
