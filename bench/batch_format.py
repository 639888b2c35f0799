"""The batch and output file format: JSON Lines through orjson (what runs write) vs Arrow IPC (pyarrow).

A papermill run writes each batch once and every notebook's kernel reads it; each model's kernel writes
its entries and the merge (and a summary's kernel) reads them. What matters is the round trip from the
Python dicts the scoring core takes and gives to the file and back to dicts. 50,000 generated leads (a
default batch) and 50,000 entries of the example logistic model's shape, each written then read back,
alternated over rounds (neither file synced to disk, as a run's are: that cost is the same for both);
prints the median CPU time of each and the ratio Arrow / JSON Lines. Then one record whose field holds a
number where the others hold text, as input files and `score` outputs may: Arrow needs one type per
column and refuses it, JSON Lines keeps it. No target: the choice is written in docs/design.md.

    .venv/bin/python bench/batch_format.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.ipc

from mlsm_nb.files import dumps
from mlsm_nb.leads import generate_leads


def jsonl_round_trip(rows: list[dict], path: Path) -> list[dict]:
    with open(path, "wb") as f:
        for row in rows:
            f.write(dumps(row) + b"\n")
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def arrow_round_trip(rows: list[dict], path: Path) -> list[dict]:
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().to_pylist()


def cpu(function, rows, path) -> float:
    start = time.process_time()
    back = function(rows, path)
    spent = time.process_time() - start
    assert len(back) == len(rows)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    leads = list(generate_leads(args.records))
    entries = [{"score": i / args.records, "label": "hot" if i % 3 else "cold", "_status": "active"}
               for i in range(args.records)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in (("batch (leads)", leads), ("output (entries)", entries)):
            times: dict[str, list[float]] = {"jsonl": [], "arrow": []}
            for _ in range(args.rounds):
                times["jsonl"].append(cpu(jsonl_round_trip, rows, Path(tmp) / "rows.jsonl"))
                times["arrow"].append(cpu(arrow_round_trip, rows, Path(tmp) / "rows.arrow"))
            j, a = statistics.median(times["jsonl"]), statistics.median(times["arrow"])
            print(f"{name:17} {args.records:,} rows written and read back, CPU median of {args.rounds}: "
                  f"JSON Lines {j:.3f} s, Arrow IPC {a:.3f} s, ratio Arrow / JSON Lines {a / j:.2f}")
        mixed = [*leads[:2], {**leads[2], "data": {**leads[2]["data"], "country": 49}}]
        back = jsonl_round_trip(mixed, Path(tmp) / "mixed.jsonl")
        print(f"mixed types       JSON Lines: {'kept' if back == mixed else 'changed'}; Arrow IPC: ", end="")
        try:
            arrow_round_trip(mixed, Path(tmp) / "mixed.arrow")
            print("kept")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            print(f"refused ({type(exc).__name__})")


if __name__ == "__main__":
    main()
