"""MongoDB store vs one plain insert_many of the same documents, on the same server.

Result documents of N leads (default 200,000) scored by the example notebooks.
Prints, measured in one run against the same server:
- first run into an empty collection: MongoStore.write_results / plain insert_many (target <= 1.5);
- a second run superseding every id of a smaller set (bumps `_current` of the old documents);
- MLSM's pattern (update_many + insert_one per record, unindexed) on 2,000 records, for comparison.

The server is `--uri` or, by default, SecantusDB started on a free loopback port (tests/servers.py).

    .venv/bin/python bench/mongo_store.py [--records N] [--supersede M] [--uri URI]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mlsm_nb import load_notebook, run_models_all  # noqa: E402
from mlsm_nb.leads import generate_leads  # noqa: E402
from mlsm_nb.store.mongo import MongoStore  # noqa: E402


def result_documents(count: int, run_id: str) -> list[dict]:
    notebooks = ROOT / "notebooks"
    models = [load_notebook(notebooks / n) for n in ("lead_rules.ipynb", "lead_rules_v2.ipynb", "lead_lr.ipynb")]
    summary = load_notebook(notebooks / "champion.ipynb")
    scored = run_models_all(models, generate_leads(count, seed=5), [summary])
    return [{"id": r["id"], "run_id": run_id, "_timestamp": int(time.time()), "_current": 0,
             "results": r["results"]} for r in scored]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def mlsm_pattern(collection, documents) -> float:
    """MLSM's RunModelsAll storage: $inc _current of the id's documents, then insert_one."""
    def store():
        for doc in documents:
            collection.update_many({"id": doc["id"]}, {"$inc": {"_current": 1}})
            collection.insert_one({"id": doc["id"], "_current": 0, "_timestamp": doc["_timestamp"],
                                   "results": doc["results"]})
    return timed(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--supersede", type=int, default=10_000)
    parser.add_argument("--mlsm", type=int, default=2_000)
    parser.add_argument("--uri")
    args = parser.parse_args()
    server = None
    if not args.uri:
        from servers import SecantusServer

        server = SecantusServer(Path(tempfile.mkdtemp(prefix="mlsm-bench-db-")) / "data").start()
        args.uri = server.uri
    try:
        client = pymongo.MongoClient(args.uri)
        db = client["mlsm_bench"]
        client.drop_database(db.name)
        documents = result_documents(args.records, "run-1")
        print(f"{len(documents):,} result documents of 4 models each; server {args.uri.split('@')[-1]}")

        plain = timed(lambda: db.plain.insert_many(copy.deepcopy(documents), ordered=False))
        store = MongoStore.from_database(db, results_collection="stored")
        first = timed(lambda: store.write_results(documents))
        print(f"plain insert_many:           {plain:7.1f} s ({len(documents) / plain:,.0f} docs/s)")
        print(f"store, first run:            {first:7.1f} s ({len(documents) / first:,.0f} docs/s)")
        print(f"ratio store/insert_many:     {first / plain:.2f} (target <= 1.5)")

        some = [dict(d, run_id="run-2") for d in documents[: args.supersede]]
        plain_some = timed(lambda: db.plain2.insert_many(copy.deepcopy(some), ordered=False))
        second = timed(lambda: store.write_results(some))
        assert store.results.count_documents({"run_id": "run-1", "_current": 1}) == len(some)
        print(f"store, second run superseding {len(some):,} ids: {second:.1f} s vs insert_many {plain_some:.1f} s "
              f"(ratio {second / plain_some:.2f})")

        mlsm_docs = documents[: args.mlsm]
        mlsm = mlsm_pattern(db.mlsm, mlsm_docs)
        mlsm_again = mlsm_pattern(db.mlsm, mlsm_docs)
        print(f"MLSM pattern, {len(mlsm_docs):,} records: {len(mlsm_docs) / mlsm:,.0f} records/s on an empty "
              f"collection, {len(mlsm_docs) / mlsm_again:,.0f} records/s superseding them "
              f"(store: {len(documents) / first:,.0f} and {len(some) / second:,.0f} records/s)")
        client.drop_database(db.name)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
