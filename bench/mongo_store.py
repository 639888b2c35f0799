"""MongoStore vs a plain insert_many of the same documents, run after run, on the same server.

Ten runs (`--runs`) over the same 100,000 ids (`--records`), result documents
scored by the example notebooks. For each run, side by side on one server:
- plain: one `insert_many` of the run's documents into a collection with no
  index but `_id` (it grows run by run, as the store's does);
- store: the run stored through the `ResultSink` interface, as `mlsm-nb run`
  does (`open_run`, `write_batch` per batch of `--batch-size`, `finish_run`),
  superseding the previous run's live document of every id.
Prints each run's times and the ratio store / plain (target <= 1.5 for every
run, the tenth included: storing must not get slower as history grows), and
checks that exactly one document per id is live, from the newest run.

The server is `--uri` or, by default, SecantusDB started on a free loopback port (tests/servers.py).

    .venv/bin/python bench/mongo_store.py [--records N] [--runs R] [--batch-size B] [--uri URI]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
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


def result_documents(count: int) -> list[dict]:
    notebooks = ROOT / "notebooks"
    models = [load_notebook(notebooks / n) for n in ("lead_rules.ipynb", "lead_rules_v2.ipynb", "lead_lr.ipynb")]
    summary = load_notebook(notebooks / "champion.ipynb")
    scored = run_models_all(models, generate_leads(count, seed=5), [summary])
    return [{"id": r["id"], "_timestamp": int(time.time()), "results": r["results"]} for r in scored]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def store_run(store: MongoStore, run_id: str, started_at: str, documents: list[dict], batch_size: int) -> None:
    """Store one run's documents as the run path does."""
    manifest = {"run_id": run_id, "started_at": started_at, "status": "running"}
    store.open_run(manifest)
    for batch, start in enumerate(range(0, len(documents), batch_size)):
        store.write_batch(run_id, batch, [{**d, "run_id": run_id} for d in documents[start:start + batch_size]])
    store.finish_run({**manifest, "status": "succeeded"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=50_000)
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
        documents = result_documents(args.records)
        store = MongoStore.from_database(db, results_collection="stored")
        first_start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        print(f"{len(documents):,} result documents of 4 models each, {args.runs} runs, batches of "
              f"{args.batch_size:,}; server {args.uri.split('@')[-1]}")
        print(f"{'run':>4} {'plain s':>8} {'store s':>8} {'ratio':>6}")
        worst = 0.0
        for run in range(1, args.runs + 1):
            run_id = f"run-{run:02d}"
            plain_docs = [{**d, "run_id": run_id, "_current": 0} for d in copy.deepcopy(documents)]
            plain = timed(lambda docs=plain_docs: db.plain.insert_many(docs, ordered=False))
            started_at = (first_start + dt.timedelta(days=run)).isoformat()
            stored = timed(lambda r=run_id, s=started_at: store_run(store, r, s, documents, args.batch_size))
            worst = max(worst, stored / plain)
            print(f"{run:>4} {plain:8.1f} {stored:8.1f} {stored / plain:6.2f}", flush=True)
        live = store.results.count_documents({"_current": 0})
        newest = store.results.count_documents({"_current": 0, "run_id": f"run-{args.runs:02d}"})
        assert live == newest == len(documents), (live, newest)
        print(f"worst ratio store/insert_many: {worst:.2f} (target <= 1.5); {live:,} live documents, "
              f"all from the newest run")
        client.drop_database(db.name)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
