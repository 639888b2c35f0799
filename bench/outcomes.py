"""Outcomes posted to `mlsm-nb serve --mongo-uri`: how soon they are stored after the last, and memory.

The server serves the example notebooks' bundle (4 models). `--rounds` times
(default 5), it scores `--records` new leads (default 10,000) in requests of
1,000, waits until their results are stored (so that the round measures outcomes
alone), then posts their `converted` outcomes over HTTP from `--connections`
clients (default 8), either as one-outcome requests (`--per-request 1`) or in
requests of `--per-request` outcomes (default 100). For each round it prints the seconds the
posting took, the seconds from the last answer until MongoDB holds every outcome of
the round (the server's /health says them stored, polled every 10 ms: MongoDB
acknowledged them), and the server's resident memory after the round. Then the
server's floor: one `insert_many` of as many outcome documents, with the same index.

What the server keeps per outcome is measured apart, in this process (tracemalloc, so that neither the
scoring nor the allocator's arenas blur it): `LiveOutcomes` fed `--kept-rounds` rounds (default 12) of
10,000 leads' scores (four models, as the bundle's) and their outcomes; it grows until its bounds are
reached (50,000 ids' scores, 100,000 (id, label) pairs remembered), then stays flat.

Target (issue 37): 10,000 posted outcomes stored within 1 s of the last; memory
flat (what the server keeps per outcome is bounded: docs/operators.md).

The database is `--uri` or, by default, SecantusDB started on a free loopback port (tests/servers.py).

    .venv/bin/python bench/outcomes.py [--records N] [--rounds R] [--per-request K] [--connections C]
                                       [--kept-rounds R] [--uri URI]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mongo_store import server_at  # noqa: E402

from mlsm_nb.leads import generate_leads  # noqa: E402
from mlsm_nb.notebook.extract import extract_bundle  # noqa: E402


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def post_all(url: str, bodies: list[list[dict]], label: str, connections: int) -> None:
    """Post every body, `connections` at a time; any answer but 200 stops the bench."""
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body[0] if len(body) == 1 else body)

    async def client():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not queue.empty():
                body = queue.get_nowait()
                response = await http.post(f"/outcomes?label={label}", json=body)
                if response.status_code != 200 or response.json().get("refused"):
                    raise SystemExit(f"POST /outcomes answered {response.status_code}: {response.text[:300]}")

    await asyncio.gather(*(client() for _ in range(connections)))


def stored_so_far(url: str) -> tuple[int, int]:
    """(stored, pending) posted outcomes, from /health (what MongoDB acknowledged: insert_many returned)."""
    state = httpx.get(url + "/health", timeout=30).json()["outcomes"]
    return state["stored"], state["pending"]


def score_new_leads(url: str, number: int, count: int) -> list:
    """Score `count` leads never scored before (their ids carry the round's number); wait until their results
    are stored; return their ids."""
    leads = list(generate_leads(count, seed=number))
    for start in range(0, len(leads), 1000):
        httpx.post(url + "/score", json=leads[start:start + 1000], timeout=120).raise_for_status()
    while httpx.get(url + "/health", timeout=30).json()["storage"]["pending"]:
        time.sleep(0.1)
    return [lead["id"] for lead in leads]


def round_of(url: str, ids: list, args: argparse.Namespace) -> tuple[float, float]:
    outcomes = [{"id": i, "converted": n % 3 == 0} for n, i in enumerate(ids)]
    bodies = [outcomes[s:s + args.per_request] for s in range(0, len(outcomes), args.per_request)]
    before = stored_so_far(url)[0]
    started = time.perf_counter()
    asyncio.run(post_all(url, bodies, "converted", args.connections))
    last = time.perf_counter()
    while stored_so_far(url) != (before + len(ids), 0):
        if time.perf_counter() - last > 60:
            raise SystemExit(f"not all stored within 60 s: {stored_so_far(url)}")
        time.sleep(0.01)
    return last - started, time.perf_counter() - last


def floor(uri: str, ids: list) -> float:
    """The server's floor: one insert_many of the same number of outcome documents into a collection with
    the (id, label) unique index, from this process."""
    collection = pymongo.MongoClient(uri)["bench_outcomes"]["floor"]
    collection.create_index([("id", 1), ("label", 1)], unique=True)
    documents = [{"id": i, "label": "floor", "value": n % 3 == 0, "observed_at": "2026-12-06T10:00:00+00:00",
                  "source": "POST /outcomes"} for n, i in enumerate(ids)]
    started = time.perf_counter()
    collection.insert_many(documents, ordered=False)
    return time.perf_counter() - started


def kept_memory(rounds: int, count: int = 10_000) -> None:
    """What `LiveOutcomes` holds, round after round of `count` new scores and their outcomes."""
    import tracemalloc

    from mlsm_nb.serve.outcomes import LiveOutcomes

    tracemalloc.start()
    live = LiveOutcomes(memory=False)  # with MongoDB: outcomes are not kept in memory
    base = tracemalloc.get_traced_memory()[0]
    held = []
    for number in range(1, rounds + 1):
        documents = [{"id": lead["id"], "results": {"lead_lr": {"1.0.0": {"score": n / count}},
                                                    "lead_rules": {"1.0.0": {"score": 0.1}, "2.0.0": {"score": 0.2}},
                                                    "champion": {"1.0.0": {"score": 0.3}}}}
                     for n, lead in enumerate(generate_leads(count, seed=number))]
        live.remember_scores(documents)
        accepted, _ = live.check([{"id": d["id"], "converted": n % 3 == 0} for n, d in enumerate(documents)],
                                 "converted")
        del documents
        live.accept(accepted, 0)
        del accepted
        held.append(f"{(tracemalloc.get_traced_memory()[0] - base) / 1e6:.1f}")
    tracemalloc.stop()
    print(f"kept by LiveOutcomes after each round of {count:,} (MB): {', '.join(held)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--kept-rounds", type=int, default=12)
    parser.add_argument("--uri")
    args = parser.parse_args()
    kept_memory(args.kept_rounds)
    from servers import ServeServer

    with server_at(args.uri) as (uri, _), tempfile.TemporaryDirectory(prefix="mlsm-bench-outcomes-") as folder:
        extract_bundle([ROOT / "notebooks"], Path(folder) / "bundle")
        server = ServeServer(Path(folder) / "bundle", "--mongo-uri", uri + "/bench_outcomes").start()
        try:
            print(f"{args.records:,} outcomes a round, {args.per_request} per request, {args.connections} clients; "
                  f"server memory at start: {resident_mb(server.process.pid):.1f} MB")
            for number in range(1, args.rounds + 1):
                ids = score_new_leads(server.url, number, args.records)
                posting, stored = round_of(server.url, ids, args)
                print(f"round {number}: posted in {posting:.2f} s ({args.records / posting:,.0f}/s), "
                      f"all stored {stored:.2f} s after the last answer; server memory "
                      f"{resident_mb(server.process.pid):.1f} MB")
            collection = pymongo.MongoClient(uri)["bench_outcomes"]["outcomes"]
            assert collection.count_documents({}) == args.rounds * args.records
            print(f"floor: one insert_many of {args.records:,} outcome documents with the (id, label) index took "
                  f"{floor(uri, ids):.2f} s")
            live = httpx.get(server.url + "/api/live", timeout=30).json()["labelled"]
            print("live window:", {key: labels["converted"]["records"] for key, labels in sorted(live.items())})
        finally:
            server.stop()


if __name__ == "__main__":
    main()
