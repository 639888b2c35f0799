"""`mlsm-nb run` wall time, CPU time and peak memory: papermill engine vs in-process engine.

Generates N leads (default 1,000,000) as JSON Lines, runs the example notebooks
over them with each engine in turn (same batch size and workers), papermill both
with a fresh kernel per execution (the default: forked from the kernel template)
and with --warm-kernels, and prints the ratios papermill / in-process of wall
time (target <= 1.5, stretch 1.3: issue 33) and of CPU time (user plus system, of
the runner and all it started: steadier than wall time on a shared machine).
Forked kernels are counted as launched ones: each is the template's child, which
collects it (`wait4`), and the template is the runner's. The template's one-time
imports are measured apart (a template started alone) and printed beside them:
they are part of each papermill run's figures. With --rounds R the three runs
are alternated R times and the ratios are the medians of each round's. With
--memory it also runs both engines on a fifth of the records and compares peak
memory (the largest resident set of the runner, a worker or a kernel): it must
not grow with N.

    .venv/bin/python bench/run_engines.py [--records N] [--batch-size B] [--rounds R] [--memory]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlsm_nb.leads import save_leads

ROOT = Path(__file__).resolve().parent.parent

_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code)
"""


def measure(records: Path, out: Path, engine: str, batch_size: int, run_id: str,
            *extra: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one `mlsm-nb run`, measured from a fresh process."""
    command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "mlsm_nb.cli", "run", str(ROOT / "notebooks"),
               "--records", str(records), "--out", str(out), "--run-id", run_id, "--engine", engine,
               "--batch-size", str(batch_size), "--no-progress", *extra]
    seconds, cpu, rss_kib, code = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    if code != "0":
        raise SystemExit(f"mlsm-nb run ({engine}) exited {code}; see {out / run_id / 'manifest.json'}")
    return float(seconds), float(cpu), int(rss_kib) // 1024


_ENGINES = (("inprocess", ()), ("papermill", ()), ("papermill --warm-kernels", ("--warm-kernels",)))


def template_imports() -> dict:
    """The kernel template's one-time imports for the example notebooks: its ready reply (seconds, CPU)."""
    from mlsm_nb.notebook.contract import lint_notebook
    from mlsm_nb.run.fork import Template, preload_modules
    from mlsm_nb.run.kernels import template_options

    specs = [lint_notebook(path) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    template = Template(template_options() or [], preload_modules(specs), [str(ROOT / "notebooks")])
    try:
        return template.ready.result(timeout=120)
    finally:
        template.close()


def _median(values) -> float:
    return statistics.median(list(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: mlsm-nb's default")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the three runs, alternated; ratios are medians")
    parser.add_argument("--memory", action="store_true", help="also compare peak memory at N/5 and N records")
    args = parser.parse_args()
    if args.batch_size is None:
        from mlsm_nb.run.settings import DEFAULT_BATCH_SIZE
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    with tempfile.TemporaryDirectory(prefix="mlsm-bench-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        save_leads(tmp / "leads.jsonl", args.records, seed=1)
        print(f"generated {args.records:,} leads in {time.perf_counter() - started:.1f} s; batch size {batch_size:,}",
              flush=True)
        runs = {label: [] for label, _ in _ENGINES}
        for round_ in range(args.rounds):  # alternated, so that a noisy spell on the machine hits every engine
            for number, (label, extra) in enumerate(_ENGINES):
                engine = "inprocess" if label == "inprocess" else "papermill"
                runs[label].append(measure(tmp / "leads.jsonl", tmp / "runs", engine, batch_size, f"{round_}-{number}",
                                           *extra))
        for label, measured in runs.items():
            print(f"{label + ':':25} " + "; ".join(f"{s:6.1f} s, CPU {c:6.1f} s, peak RSS {r} MiB"
                                                   for s, c, r in measured))
        ratios = {label: [(s / b, c / bc) for (s, c, _), (b, bc, _) in zip(runs[label], runs["inprocess"], strict=True)]
                  for label in ("papermill", "papermill --warm-kernels")}
        for label, pairs in ratios.items():
            wall, cpu = _median(w for w, _ in pairs), _median(c for _, c in pairs)
            print(f"ratio {label}/inprocess: wall {wall:.2f}, CPU {cpu:.2f}"
                  f" (target <= 1.5, stretch 1.3; median of {len(pairs)}: wall "
                  + ", ".join(f"{w:.2f}" for w, _ in pairs) + ")")
        ready = template_imports()
        print(f"kernel template's one-time imports (in each papermill run above): {ready['seconds']:.2f} s wall, "
              f"{ready['cpu']:.2f} s CPU")
        inprocess_rss, papermill_rss = runs["inprocess"][0][2], runs["papermill"][0][2]
        if args.memory:
            small = args.records // 5
            with open(tmp / "leads.jsonl") as source, open(tmp / "small.jsonl", "w") as target:
                for _, line in zip(range(small), source, strict=False):
                    target.write(line)
            for engine, big_rss in (("papermill", papermill_rss), ("inprocess", inprocess_rss)):
                _, _, small_rss = measure(tmp / "small.jsonl", tmp / "runs", engine, batch_size, f"{engine}-small")
                print(f"peak RSS {engine}: {small:,} records {small_rss} MiB, {args.records:,} records "
                      f"{big_rss} MiB (ratio {big_rss / small_rss:.2f}; flat means it does not grow)")


if __name__ == "__main__":
    main()
