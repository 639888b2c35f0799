"""What reading a records file costs: `read_batches` vs a plain loop that only parses each line.

Writes LINES example leads as JSON Lines, then reads them in turns with
`run.records.read_batches` (hashing, checks, duplicate ids and keys, rejected
lines) and with a plain loop (`orjson.loads` per line), and prints the
medians per line, wall and CPU, and their ratio.

    .venv/bin/python bench/records_reader.py [--rounds N] [--lines N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from mlsm_nb.leads import save_leads
from mlsm_nb.run.records import read_batches


def timed(read) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    read()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain(path: Path) -> None:
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)


def reader(path: Path) -> None:
    for _ in read_batches(path, "id", 50_000, None, path.with_name("rejected.jsonl"), {}):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leads.jsonl"
        save_leads(path, args.lines, seed=1)
        times: dict[str, list[tuple[float, float]]] = {"read_batches": [], "plain loop": []}
        for _ in range(args.rounds):
            times["read_batches"].append(timed(lambda: reader(path)))
            times["plain loop"].append(timed(lambda: plain(path)))
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in times.items()}
    for name, (wall, cpu) in medians.items():
        print(f"{name:13} {wall / args.lines * 1e6:6.2f} µs/line wall, {cpu / args.lines * 1e6:6.2f} µs/line CPU")
    (wall, cpu), (base_wall, base_cpu) = medians["read_batches"], medians["plain loop"]
    print(f"read_batches / plain loop: {wall / base_wall:.2f} wall, {cpu / base_cpu:.2f} CPU "
          f"({args.lines:,} lines, median of {args.rounds})")


if __name__ == "__main__":
    main()
