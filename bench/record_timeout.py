"""The per-record time limit's cost on 1,000,000 leads, in-process: limit on vs off, side by side.

Target: under 3 % (CPU and wall) for `mlsm-nb run --engine inprocess --record-timeout 60` (the default)
against `--record-timeout 0` (no limit), over the example notebooks (lead_rules 1.0.0 and 2.0.0, lead_lr
1.0.0, champion 1.0.0).

1. whole runs: `mlsm-nb run --engine inprocess` with the limit on and off, alternated `--rounds` times;
   wall and CPU (user + system of the runner and its workers) of each; ratios on / off, medians of the
   rounds' ratios;
2. the scoring core alone, in this process (where the limit's ticks are SIGALRM, as in a worker): every
   model over the same leads in batches of `--batch-size` with `score_batch(limit=60)`, with
   `score_batch(limit=None)` (records still timed, for the slowest: what --record-timeout 0 leaves) and
   with the loop as it was before the limit (`Model.execute` per record, nothing timed); CPU per record
   and ratios to that loop, medians of the rounds.

    .venv/bin/python bench/record_timeout.py [--records N] [--rounds R] [--batch-size B]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from run_engines import measure  # bench/ is the script's folder: first on sys.path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.03


def _plain_loop(model, records, dependencies):
    """The scoring loop as it was before the limit: `Model.execute` per record, nothing timed (full garbage
    collections deferred, as `score_batch` defers them)."""
    from mlsm_nb._gc import full_collections_deferred
    from mlsm_nb.core.batch import dependency_results
    from mlsm_nb.core.output import stored_entry

    with full_collections_deferred():
        results = dependency_results(model, dependencies or {}, len(records))
        entries = []
        for record, result in zip(records, results, strict=True):
            model.execute(record.get("data"), result)
            entries.append(result[model.name][model.version])
        return list(map(stored_entry, entries))


def score_all(models, batches, how: str) -> tuple[float, float]:
    """(wall, CPU) seconds to score every batch with every model (summaries last), one way."""
    from mlsm_nb.core.batch import score_batch

    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        entries = {}
        for model in models:
            needs = {(d["name"], d["version"]): entries[d["name"], d["version"]] for d in getattr(model, "models", ())}
            if how == "before" and model.score_frame is None:  # a frame is scored whole either way
                entries[model.key] = _plain_loop(model, batch, needs)
            else:
                entries[model.key] = score_batch(model, batch, needs, limit=60.0 if how == "on" else None).entries
    return time.perf_counter() - started, time.process_time() - cpu


def _median(values) -> float:
    return statistics.median(list(values))


def whole_runs(count: int, rounds: int, batch_size: int) -> None:
    """`mlsm-nb run --engine inprocess` over `count` leads, the limit on and off, alternated `rounds` times."""
    from mlsm_nb.leads import save_leads

    measured = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="mlsm-bench-") as tmp:
        leads = save_leads(Path(tmp) / "leads.jsonl", count, seed=1)
        for round_ in range(rounds):  # alternated: a noisy spell on the machine hits both
            for label, value in (("on", "60"), ("off", "0")) if round_ % 2 == 0 else (("off", "0"), ("on", "60")):
                wall, cpu, _ = measure(leads, Path(tmp) / "runs", "inprocess", batch_size, f"{label}-{round_}",
                                       "--record-timeout", value)
                measured[label].append((wall, cpu))
    for label, pairs in measured.items():
        print(f"run --record-timeout {'60' if label == 'on' else '0 '}: "
              + "; ".join(f"wall {w:6.1f} s, CPU {c:6.1f} s" for w, c in pairs))
    wall = [on[0] / off[0] for on, off in zip(measured["on"], measured["off"], strict=True)]
    cpu = [on[1] / off[1] for on, off in zip(measured["on"], measured["off"], strict=True)]
    print(f"whole run, limit on / off: wall {_median(wall):.3f}, CPU {_median(cpu):.3f} (target < {TARGET}; "
          "rounds: wall " + ", ".join(f"{r:.3f}" for r in wall) + "; CPU " + ", ".join(f"{r:.3f}" for r in cpu) + ")",
          flush=True)


def core_only(count: int, rounds: int, batch_size: int) -> None:
    from mlsm_nb import load_notebook
    from mlsm_nb.leads import generate_leads

    models = [load_notebook(p) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    models = [m for m in models if m.kind != "summary"] + [m for m in models if m.kind == "summary"]
    leads = list(generate_leads(count, seed=1))
    batches = [leads[i:i + batch_size] for i in range(0, count, batch_size)]
    ways = ("before", "off", "on")
    for how in ways:  # warm up: imports (pandas, for score_frame), caches
        score_all(models, batches[:1], how)
    measured = {how: [] for how in ways}
    for round_ in range(rounds):
        for how in ways[round_ % 3:] + ways[:round_ % 3]:
            measured[how].append(score_all(models, batches, how))
    for how in ways:
        cpu = _median(c for _, c in measured[how])
        ratio = _median(c / b for (_, c), (_, b) in zip(measured[how], measured["before"], strict=True))
        print(f"scoring core, {how:6}: CPU {cpu:6.2f} s ({cpu / count * 1e6:5.2f} µs a lead, 4 models), "
              f"{ratio:.3f} of the loop before the limit")
    on_off = [c / o for (_, c), (_, o) in zip(measured["on"], measured["off"], strict=True)]
    print(f"scoring core, limit on / off: CPU {_median(on_off):.3f} (target < {TARGET})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement, alternated; medians")
    parser.add_argument("--batch-size", type=int, default=None, help="default: mlsm-nb's default")
    args = parser.parse_args()
    from mlsm_nb.run.settings import DEFAULT_BATCH_SIZE

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    print(f"{args.records:,} leads, batches of {batch_size:,}, {args.rounds} round(s)", flush=True)
    whole_runs(args.records, args.rounds, batch_size)
    core_only(args.records, args.rounds, batch_size)


if __name__ == "__main__":
    main()
