"""MongoStore vs a plain insert_many of the same documents, run after run, on the same server.

Ten runs (`--runs`) over the same 100,000 ids (`--records`), result documents
scored by the example notebooks. For each run, side by side on one server:
- plain: one `insert_many` of the run's documents into a collection with no
  index but `_id` (it grows run by run, as the store's does);
- store: the run stored through the `ResultSink` interface, as `mlsm-nb run`
  does (`open_run`, `write_batch` per batch of `--batch-size`, `finish_run`),
  superseding the previous run's live document of every id;
- floor: what this server cannot go below: the run's documents inserted into a
  collection with the store's two indexes, then the previous run's live
  documents marked by one `update_many` on `run_id` (correct only because here
  every run replaces every id; `--no-floor` skips it).
Prints each run's wall and CPU seconds (this client's and, when this script
started the server, the server's) and the ratios store / plain and floor / plain,
then checks that exactly one document per id is live, from the newest run.

Targets (issue 36): first run <= 1.5, every superseding run <= 2.5, the tenth
as the second. Not reachable on SecantusDB: its floor is about 2.6 for a first
run (an entry in each index per document) and 5 to 5.7 for a superseding one (it
rewrites an updated document whole, with all its index entries: five to seven
plain inserts). Measured (2 cores, CPU ratios): the store 2.99 first, 6.35 to
7.11 superseding, about 1.25 times the floor, the tenth 1.09 times the second
(the floor's 1.13) (docs/operators.md, "What storing costs").

The server is `--uri` or, by default, SecantusDB started on a free loopback port (tests/servers.py).

    .venv/bin/python bench/mongo_store.py [--records N] [--runs R] [--batch-size B] [--ids-per-query Q]
                                          [--no-floor] [--uri URI]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mlsm_nb import load_notebook, run_models_all  # noqa: E402
from mlsm_nb.leads import generate_leads  # noqa: E402
from mlsm_nb.store.mongo import IDS_PER_QUERY, MongoStore, document_id, started_micros, superseded_value  # noqa: E402


def result_documents(count: int) -> list[dict]:
    notebooks = ROOT / "notebooks"
    models = [load_notebook(notebooks / n) for n in ("lead_rules.ipynb", "lead_rules_v2.ipynb", "lead_lr.ipynb")]
    summary = load_notebook(notebooks / "champion.ipynb")
    scored = run_models_all(models, generate_leads(count, seed=5), [summary])
    return [{"id": r["id"], "_timestamp": int(time.time()), "results": r["results"]} for r in scored]


def server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) the server process has used; 0 when it is not ours to read."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_at(uri: str | None) -> Iterator[tuple[str, int | None]]:
    """`uri`, else SecantusDB started on a free loopback port for the while (tests/servers.py); yields the
    URI and the server's process id (None for `uri`: its CPU is not this machine's to read)."""
    if uri:
        yield uri, None
        return
    from servers import SecantusServer

    with tempfile.TemporaryDirectory(prefix="mlsm-bench-db-") as folder:  # its data and log, removed after
        server = SecantusServer(Path(folder) / "data").start()
        try:
            yield server.uri, server.process.pid
        finally:
            server.stop()


def timed(action, pid: int | None = None) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and the server's CPU seconds `action()` took."""
    wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu(pid)
    action()
    return time.perf_counter() - wall, time.process_time() - cpu, server_cpu(pid) - server


def store_run(store: MongoStore, run_id: str, started_at: str, documents: list[dict], batch_size: int) -> None:
    """Store one run's documents as the run path does."""
    manifest = {"run_id": run_id, "started_at": started_at, "status": "running"}
    store.open_run(manifest)
    for batch, start in enumerate(range(0, len(documents), batch_size)):
        store.write_batch(run_id, batch, [{**d, "run_id": run_id} for d in documents[start:start + batch_size]])
    store.finish_run({**manifest, "status": "succeeded"})


def floor_run(collection, run: int, run_ids: list[str], starts: list[int], documents: list[dict]) -> None:
    """The cheapest correct superseding this server offers, for comparison: the run's documents inserted
    live into a collection with the store's indexes, then one `update_many` marking every live document
    of the previous run (valid here only because each run replaces every id of the one before)."""
    collection.insert_many([{"_id": document_id(starts[run], run_ids[run], 0, n), **d, "run_id": run_ids[run],
                             "_current": 0} for n, d in enumerate(documents)], ordered=False)
    if run > 1:
        collection.update_many({"run_id": run_ids[run - 1], "_current": 0},
                               {"$set": {"_current": superseded_value(starts[run - 1])}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--ids-per-query", type=int, default=IDS_PER_QUERY, help="MongoStore's setting")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor measurement (a third of the time)")
    parser.add_argument("--uri")
    args = parser.parse_args()
    with server_at(args.uri) as (uri, pid):
        compare(args, uri, pid)


def compare(args: argparse.Namespace, uri: str, pid: int | None) -> None:
    """The runs side by side (see the module docstring); `pid`: the server's process, when this script's."""
    client = pymongo.MongoClient(uri)
    db = client["mlsm_bench"]
    client.drop_database(db.name)
    documents = result_documents(args.records)
    store = MongoStore.from_database(db, results_collection="stored", ids_per_query=args.ids_per_query)
    floor = db.floor
    floor.create_index([("_current", 1), ("id", 1)])
    floor.create_index("run_id")
    first_start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    run_ids = [f"run-{run:02d}" for run in range(args.runs + 1)]
    started = [(first_start + dt.timedelta(days=run)).isoformat() for run in range(args.runs + 1)]
    print(f"{len(documents):,} result documents of 4 models each, {args.runs} runs, batches of "
          f"{args.batch_size:,}, {args.ids_per_query} ids per query; server {uri.split('@')[-1]}")
    print("plain: insert_many; store: MongoStore; floor: insert + one update_many of the previous run")
    print(f"{'':4} {'---- wall s ----':^20} {'wall ratio':^13}   {'---- CPU s, client+server ----':^32} "
          f"{'CPU ratio':^13}")
    print(f"{'run':>4} {'plain':>6} {'store':>6} {'floor':>6} {'store':>6} {'floor':>6}   {'plain':>10} "
          f"{'store':>10} {'floor':>10} {'store':>6} {'floor':>6}")
    ratios: dict[int, tuple[float, float]] = {}
    for run in range(1, args.runs + 1):
        run_id = run_ids[run]
        plain_docs = [{**d, "run_id": run_id, "_current": 0} for d in copy.deepcopy(documents)]
        plain = timed(lambda docs=plain_docs: db.plain.insert_many(docs, ordered=False), pid)
        stored = timed(lambda r=run_id, s=started[run]: store_run(store, r, s, documents, args.batch_size), pid)
        least = (0.0, 0.0, 0.0) if args.no_floor else timed(lambda r=run: floor_run(
            floor, r, run_ids, [started_micros(s) for s in started], documents), pid)
        cpu = [(c + s) for _, c, s in (plain, stored, least)]
        ratios[run] = stored[0] / plain[0], cpu[1] / cpu[0]
        floor_wall, floor_cpu, floor_ratios = (
            (f"{'-':>6}", f"{'-':>10}", ("-", "-")) if args.no_floor else
            (f"{least[0]:6.1f}", f"{least[1]:4.1f}+{least[2]:<5.1f}",
             (f"{least[0] / plain[0]:.2f}", f"{cpu[2] / cpu[0]:.2f}")))
        print(f"{run:>4} {plain[0]:6.1f} {stored[0]:6.1f} {floor_wall} {stored[0] / plain[0]:6.2f} "
              f"{floor_ratios[0]:>6}   {plain[1]:4.1f}+{plain[2]:<5.1f} {stored[1]:4.1f}+{stored[2]:<5.1f} "
              f"{floor_cpu} {cpu[1] / cpu[0]:6.2f} {floor_ratios[1]:>6}", flush=True)
    live = store.results.count_documents({"_current": 0})
    newest = store.results.count_documents({"_current": 0, "run_id": run_ids[args.runs]})
    assert live == newest == len(documents), (live, newest)
    superseding = [ratios[run] for run in ratios if run > 1]
    print(f"store/insert_many, wall and CPU: first run {ratios[1][0]:.2f}, {ratios[1][1]:.2f} (target <= 1.5); "
          + (f"superseding runs at worst {max(r[0] for r in superseding):.2f}, "
             f"{max(r[1] for r in superseding):.2f} (target <= 2.5); last / second "
             f"{ratios[args.runs][0] / ratios[2][0]:.2f}, {ratios[args.runs][1] / ratios[2][1]:.2f} (target 1)"
             if superseding else ""))
    print(f"{live:,} live documents, all from the newest run")
    client.drop_database(db.name)


if __name__ == "__main__":
    main()
