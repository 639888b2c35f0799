"""The fixed cost of one papermill execution: a launched kernel vs a kernel forked from the template.

One execution's cost from kernel start to kernel exit, the runner's part included (papermill, nbclient,
notebook saves, the manifest, the merge): `mlsm-nb run` of one model notebook (default
notebooks/lead_lr.ipynb, which imports numpy and pandas) over batches of one lead each, one worker, with
kernels launched (``MLSM_NB_FORK_KERNELS=0``) and forked (the default), alternated. Each is run with
SHORT and LONG executions; the cost of one execution is the difference divided by LONG - SHORT, so the
run's one-time costs (the CLI's imports, the template's) drop out; they are printed apart (a run of
SHORT executions minus SHORT times the cost of one).

CPU is user plus system time of the runner and every process it started, over their whole lives: the
runner's own and ``RUSAGE_CHILDREN`` once the run has ended. A forked kernel is not the runner's child but
the template's: the template collects it with ``wait4``, and its usage joins the template's, which joins
the runner's when the runner collects the template (as a run ends), so it is counted like a launched
kernel (bench/run_engines.py counts it the same way).

Target: forked <= 0.15 s CPU per execution (launched: about 0.5 s).

    .venv/bin/python bench/kernel_cost.py [--rounds R] [--short N] [--long N] [--notebook PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mlsm_nb.leads import save_leads

ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU = 0.15

_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, code)
"""
MODES = {"launched": {"MLSM_NB_FORK_KERNELS": "0"}, "forked": {"MLSM_NB_FORK_KERNELS": "1"}}


def measure(notebook: Path, records: Path, out: Path, run_id: str, mode: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `mlsm-nb run`, one execution per lead, from a fresh process."""
    command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "mlsm_nb.cli", "run", str(notebook),
               "--records", str(records), "--out", str(out), "--run-id", run_id, "--batch-size", "1",
               "--workers", "1", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **MODES[mode]})
    seconds, cpu, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"mlsm-nb run ({mode}) exited {code}; see {out / run_id / 'manifest.json'}")
    return float(seconds), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=12)
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "lead_lr.ipynb")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kernel-cost-") as tmp:
        tmp = Path(tmp)
        records = {n: save_leads(tmp / f"leads-{n}.jsonl", n) for n in (args.short, args.long)}
        per: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        once: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for round_ in range(args.rounds):
            for mode in MODES:
                short = measure(args.notebook, records[args.short], tmp, f"{mode}-{round_}-s", mode)
                long = measure(args.notebook, records[args.long], tmp, f"{mode}-{round_}-l", mode)
                one = tuple((b - a) / (args.long - args.short) for a, b in zip(short, long, strict=True))
                per[mode].append(one)
                once[mode].append(tuple(s - args.short * o for s, o in zip(short, one, strict=True)))
    medians = {mode: [statistics.median(v[i] for v in per[mode]) for i in (0, 1)] for mode in MODES}
    print(f"one execution ({args.notebook.name}, one lead), median of {args.rounds} rounds:")
    for mode, (wall, cpu) in medians.items():
        run_wall, run_cpu = (statistics.median(v[i] for v in once[mode]) for i in (0, 1))
        print(f"  {mode:9} {wall:5.3f} s wall  {cpu:5.3f} s CPU    (once per run: {run_wall:4.2f} s wall, "
              f"{run_cpu:4.2f} s CPU)")
    (lw, lc), (fw, fc) = medians["launched"], medians["forked"]
    rounds = ", ".join(f"{cpu:.3f}" for _, cpu in per["forked"])  # the spread: this machine is shared and noisy
    print(f"launched / forked: {lw / fw:.2f} wall, {lc / fc:.2f} CPU; forked CPU {fc:.3f} s "
          f"({'within' if fc <= TARGET_CPU else 'above'} the target {TARGET_CPU} s; by round: {rounds})")


if __name__ == "__main__":
    main()
