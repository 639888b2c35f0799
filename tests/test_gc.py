"""mlsm_nb._gc: full garbage collections wait for the end of bulk work; young ones do not."""

import gc
import threading
import weakref

import pytest

from mlsm_nb import Model
from mlsm_nb._gc import DEFERRED, collect_deferred, full_collections_deferred
from mlsm_nb.core.batch import score_batch


@pytest.fixture(autouse=True)
def python_defaults():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def make_survivors(count: int) -> list:
    """Objects that stay alive, as a batch's records and entries do."""
    return [{"id": i, "data": {"x": [i]}} for i in range(count)]


def test_full_collections_wait_for_the_end_of_the_block():
    kept = []
    with full_collections_deferred():
        assert gc.get_threshold() == (700, 10, DEFERRED)
        before = full_collections()
        kept += make_survivors(400_000)  # some 80 young collections: 8 times Python's threshold for a full one
        assert full_collections() == before
        assert gc.get_count()[2] > 10
    assert gc.get_threshold() == (700, 10, 10)
    collect_deferred()
    assert full_collections() == before + 1 and gc.get_count()[2] == 0, "the deferred full collection runs"


def test_young_collections_still_free_dropped_cycles():
    class Node:
        def __init__(self):
            self.me = self

    with full_collections_deferred():
        dropped = weakref.ref(Node())
        make_survivors(5_000)  # enough new objects for a young collection
        assert dropped() is None, "a reference cycle dropped in the block is freed in it"


def test_thresholds_are_restored_after_nesting_errors_and_threads():
    with pytest.raises(ValueError):
        with full_collections_deferred():
            with full_collections_deferred():
                pass
            assert gc.get_threshold()[2] == DEFERRED, "an inner block leaves the outer one deferred"
            raise ValueError("a model's error")
    assert gc.get_threshold() == (700, 10, 10)

    inside, release = threading.Barrier(3, timeout=30), threading.Event()

    def work():
        with full_collections_deferred():
            inside.wait()
            release.wait(30)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        inside.wait()
        assert gc.get_threshold()[2] == DEFERRED
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert gc.get_threshold() == (700, 10, 10), "the last block to end restores Python's thresholds"


def test_score_batch_scores_with_full_collections_deferred():
    seen = []

    def score(data, results):
        seen.append(gc.get_threshold()[2])
        return {"score": 0.5}

    outcome = score_batch(Model("m", {"x": "int"}, "1", score, "active"), [{"id": 1, "data": {"x": 1}}])
    assert outcome.entries[0]["score"] == 0.5
    assert seen == [DEFERRED]
    assert gc.get_threshold() == (700, 10, 10)
