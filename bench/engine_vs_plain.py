"""Engine overhead: run_models_all vs a plain loop calling the same score functions.

100,000 generated leads through the example notebooks' 3 models (lead_rules
1.0.0 and 2.0.0, lead_lr 1.0.0) and 1 summary (champion), both in this process,
alternating within each round. Prints the median of the per-round ratios engine / plain (target <= 1.5).

    .venv/bin/python bench/engine_vs_plain.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from pathlib import Path

from mlsm_nb import load_notebook, run_models_all
from mlsm_nb.leads import generate_leads

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def plain_loop(models, summary, records):
    """What a hand-written script would do: call each score function, nest the results."""
    out = []
    for record in records:
        data = record["data"]
        results = {}
        for model in models:
            results.setdefault(model.name, {})[model.version] = model.fcn(data, results)
        results[summary.name] = {summary.version: summary.fcn(data, results)}
        record["results"] = results
        out.append(record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    models = [load_notebook(NOTEBOOKS / n) for n in ("lead_rules.ipynb", "lead_rules_v2.ipynb", "lead_lr.ipynb")]
    summary = load_notebook(NOTEBOOKS / "champion.ipynb")
    source = list(generate_leads(args.records, seed=1))
    engine_times, plain_times = [], []
    for _ in range(args.rounds):
        records = copy.deepcopy(source)
        gc.collect()
        start = time.perf_counter()
        scored = run_models_all(models, records, [summary])
        engine_times.append(time.perf_counter() - start)
        records = copy.deepcopy(source)
        gc.collect()
        start = time.perf_counter()
        expected = plain_loop(models, summary, records)
        plain_times.append(time.perf_counter() - start)
    assert len(scored) == len(expected) == args.records
    strip = lambda r: {n: {v: {k: x for k, x in e.items() if k != "_status"} for v, e in vs.items()}  # noqa: E731
                       for n, vs in r.items()}
    assert all(strip(a["results"]) == strip(b["results"]) for a, b in zip(scored, expected,
                                                                          strict=True)), "results differ"
    engine, plain = min(engine_times), min(plain_times)
    # Each round times both back to back, so the ratio within a round sees the same machine load;
    # the median of those ratios is what holds on a shared, noisy machine.
    ratios = sorted(e / p for e, p in zip(engine_times, plain_times, strict=True))
    print(f"records: {args.records}, models: 3 + 1 summary, rounds: {args.rounds}")
    print(f"engine: best {engine:.3f} s ({args.records / engine:,.0f} records/s)")
    print(f"plain:  best {plain:.3f} s ({args.records / plain:,.0f} records/s)")
    print(f"per-round ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"ratio engine/plain: {statistics.median(ratios):.2f} median of rounds (target <= 1.5)")


if __name__ == "__main__":
    main()
