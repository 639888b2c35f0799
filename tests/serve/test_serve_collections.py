"""A serve worker's garbage collections: what it loaded is frozen at start, and a swapped-out bundle is freed."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest
from test_serve_swap import make_bundle, point

from mlsm_nb._gc import SERVING_YOUNG
from mlsm_nb.serve.app import ServeSettings, create_app
from mlsm_nb.serve.bundle import load_served_bundle
from mlsm_nb.serve.scoring import ScoringThreads
from mlsm_nb.serve.swap import BundleSwitch


@pytest.fixture
def collections_restored():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_worker_freezes_what_it_loaded_and_collects_young_objects_less_often(tmp_path, collections_restored):
    app = create_app(ServeSettings(bundle_dir=str(make_bundle(tmp_path, "b1", "1.0", 1))))
    gc.unfreeze()

    async def started():
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count(), gc.get_threshold()[0]

    frozen, young = asyncio.run(started())
    assert frozen > 10_000  # the imports and the bundle
    assert young == SERVING_YOUNG


def test_a_bundle_swapped_out_is_freed_though_it_was_frozen(tmp_path, collections_restored):
    link = tmp_path / "current"
    link.symlink_to(make_bundle(tmp_path, "b1", "1.0", 1))
    switch = BundleSwitch(link, load_served_bundle(link))
    old = weakref.ref(switch.current.plan[0].fcn)  # its notebook's code: a cycle (a function and its globals)
    gc.freeze()  # as at a worker's start
    point(link, make_bundle(tmp_path, "b2", "2.0", 3))
    assert asyncio.run(switch.reload())["outcome"] == "swapped"
    assert old() is None
    assert switch.current.plan[0].version == "2.0"


def test_a_scoring_thread_waiting_for_work_holds_nothing_of_the_last_request():
    class Result:
        pass

    threads = ScoringThreads(1)
    result = asyncio.run(threads.score(lambda board, stuck: Result()))
    kept = weakref.ref(result)
    del result
    waited = 0.0
    while kept() is not None and waited < 5:  # the thread lets go just after it hands the result over
        time.sleep(0.01)
        waited += 0.01
    assert kept() is None
    threads.close()
