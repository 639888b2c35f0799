"""What naming the cell a score raised in costs: a record whose score raises, with and without `_error_at`.

Scores one record, whose notebook's `score` raises, many times with the cell lookup
(`core.cells.raised_at`) and with it switched off, taking turns, and prints the
medians per record and their ratio. Only records whose score raises pay it.

    .venv/bin/python bench/error_location.py [--rounds N] [--records N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

import mlsm_nb.core.model as model_module
from mlsm_nb import load_notebook

CELLS = [("version", 'name = "fails"\nversion = "1"\nstatus = "draft"'), ("fields", 'fields = {"x": "int"}'),
         ("score", "def score(data, results):\n    return {'score': 1 / (data['x'] - data['x'])}")]


def per_record(model, records: int) -> float:
    started = time.perf_counter()
    for _ in range(records):
        model.execute({"x": 3}, {})
    return (time.perf_counter() - started) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
        for tag, source in CELLS:
            cell = nbformat.v4.new_code_cell(source)
            cell.metadata["tags"] = [tag]
            nb.cells.append(cell)
        path = Path(folder) / "fails.ipynb"
        nbformat.write(nb, path)
        model = load_notebook(path)
    located = model_module.raised_at
    with_cell, without = [], []
    for _ in range(args.rounds):  # taking turns: a noisy spell on a shared machine hits both
        model_module.raised_at = located
        with_cell.append(per_record(model, args.records))
        model_module.raised_at = lambda exc: None
        without.append(per_record(model, args.records))
    model_module.raised_at = located
    a, b = statistics.median(with_cell), statistics.median(without)
    print(f"per raising record: {a:.2f} µs with _error_at, {b:.2f} µs without; ratio {a / b:.2f} "
          f"(medians of {args.rounds})")

if __name__ == "__main__":
    main()
