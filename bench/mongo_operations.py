"""What each kind of MongoDB operation storing could use costs per document, on one server.

The evidence behind MongoStore's design and its `ids_per_query` default
(docs/operators.md, "What storing costs"). On `--records` result documents
(those of bench/mongo_store.py), each measured `--rounds` times, median:
- insert: `insert_many` into a collection with `_id` only, and with the
  store's two indexes (`(_current, id)`, `run_id`);
- read: the live documents of the ids, in `$in` queries of each `--sizes`;
- supersede: `_current` of one run's live documents set, by `_id` in `$in`
  lists of each size (what the store sends, having read first), and by one
  `update_many` on the `run_id` index (the cheapest marking there is);
- conditional: the store's alternative without the read: a pipeline update of
  the live documents of the ids (`$in` of each size) that are older in run
  order, the batch's own new documents among those it selects; with an older
  run's document live beside each id, and with none (ids stored for the first time).

Times are microseconds per document: wall, and the server's CPU when this
script started the server (SecantusDB on a free loopback port, tests/servers.py);
with `--uri`, wall only.

    .venv/bin/python bench/mongo_operations.py [--records N] [--sizes 10,20,50,100] [--rounds R] [--uri URI]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pymongo
from pymongo import UpdateMany

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from mongo_store import result_documents, server_at, server_cpu  # noqa: E402

from mlsm_nb.store.mongo import document_id, superseded_value  # noqa: E402

STARTS = (1767225600000000, 1767312000000000)  # two runs a day apart (2026-01-01, 2026-01-02), µs since 1970


class Bench:
    def __init__(self, db, pid: int | None, documents: list[dict], rounds: int):
        self.db, self.pid, self.documents, self.rounds = db, pid, documents, rounds
        self.ids = [d["id"] for d in documents]
        self.made = 0

    def collection(self, runs: tuple[int, ...], indexes: bool = True):
        """A new collection holding the live documents of `runs` (0: the older run, 1: the newer): with
        both, the state a batch leaves between inserting and superseding."""
        self.made += 1
        collection = self.db[f"c{self.made}"]
        if indexes:
            collection.create_index([("_current", 1), ("id", 1)], name="current_id")
            collection.create_index("run_id", name="run_id")
        for run in runs:
            collection.insert_many(self.prepared(run, 0), ordered=False)
        return collection

    def prepared(self, run: int, current: float) -> list[dict]:
        return [{"_id": document_id(STARTS[run], f"r{run}", 0, n), **d, "run_id": f"r{run}", "_current": current}
                for n, d in enumerate(self.documents)]

    def measure(self, label: str, setup: Callable, action: Callable) -> None:
        """`action(setup())`, `rounds` times on fresh state; prints the median µs per document."""
        walls, cpus = [], []
        for _ in range(self.rounds):
            state = setup()
            cpu, wall = server_cpu(self.pid) if self.pid else 0.0, time.perf_counter()
            action(state)
            walls.append(time.perf_counter() - wall)
            cpus.append(server_cpu(self.pid) - cpu if self.pid else 0.0)
        per = 1e6 / len(self.documents)
        cpu = f"{statistics.median(cpus) * per:8.0f}" if self.pid else f"{'':>8}"
        print(f"{label:58} {statistics.median(walls) * per:8.0f} {cpu}", flush=True)

    def finds(self, collection, size: int) -> None:
        for i in range(0, len(self.ids), size):
            list(collection.find({"id": {"$in": self.ids[i:i + size]}, "_current": 0}, {"_id": 1, "id": 1}))


def conditional(size: int, ids: list, started: int) -> list[UpdateMany]:
    """Live documents of the ids older than a run started at `started` get their own superseded value
    (for documents of this format only; enough to measure the cost)."""
    prefix = f"{started:017d}"
    own = {"$toLong": {"$substrCP": ["$_id", 0, 17]}}
    value = {"$cond": [{"$lt": [{"$substrCP": ["$_id", 0, 17]}, prefix]},
                       {"$divide": [{"$subtract": [10**16, own]}, 10**16]}, "$_current"]}
    return [UpdateMany({"_current": 0, "id": {"$in": ids[i:i + size]}}, [{"$set": {"_current": value}}])
            for i in range(0, len(ids), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sizes", default="10,20,50,100", help="ids per $in query, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uri")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with server_at(args.uri) as (uri, pid):
        client = pymongo.MongoClient(uri)
        client.drop_database("mlsm_bench_ops")
        bench = Bench(client["mlsm_bench_ops"], pid, result_documents(args.records), args.rounds)
        print(f"{args.records:,} result documents, median of {args.rounds}; server {uri.split('@')[-1]}")
        print(f"{'µs per document':58} {'wall':>8} {'srv CPU' if pid else '':>8}")
        older = superseded_value(STARTS[0])
        bench.measure("insert_many, _id only", lambda: bench.collection((), indexes=False),
                      lambda c: c.insert_many(bench.prepared(1, 0), ordered=False))
        bench.measure("insert_many, the store's indexes", lambda: bench.collection(()),
                      lambda c: c.insert_many(bench.prepared(1, 0), ordered=False))
        bench.measure("supersede: update_many on run_id (the floor)", lambda: bench.collection((0,)),
                      lambda c: c.update_many({"run_id": "r0", "_current": 0}, {"$set": {"_current": older}}))
        losers = [document_id(STARTS[0], "r0", 0, n) for n in range(len(bench.ids))]
        for size in sizes:
            bench.measure(f"read live documents, $in {size}, one live each", lambda: bench.collection((0,)),
                          lambda c, size=size: bench.finds(c, size))
            bench.measure(f"read live documents, $in {size}, none stored", lambda: bench.collection(()),
                          lambda c, size=size: bench.finds(c, size))
            bench.measure(f"supersede by _id, $in {size}", lambda: bench.collection((0,)),
                          lambda c, size=size: c.bulk_write([
                              UpdateMany({"_id": {"$in": losers[i:i + size]}}, {"$set": {"_current": older}})
                              for i in range(0, len(losers), size)], ordered=False))
            bench.measure(f"conditional, $in {size}, older run live beside", lambda: bench.collection((0, 1)),
                          lambda c, size=size: c.bulk_write(conditional(size, bench.ids, STARTS[1]), ordered=False))
            bench.measure(f"conditional, $in {size}, nothing to supersede", lambda: bench.collection((1,)),
                          lambda c, size=size: c.bulk_write(conditional(size, bench.ids, STARTS[1]), ordered=False))
        client.drop_database("mlsm_bench_ops")


if __name__ == "__main__":
    main()
