"""`mlsm-nb run --engine inprocess` over a plain script doing the same work.

The script imports mlsm_nb, loads the example notebooks, reads the leads with
orjson, calls `run_models_all` and writes the result documents as JSON Lines:
the least a run can do. Both are timed from a fresh process, back to back, in
the same conditions; the ratio run / script is the price of the run path
(batches, manifest, progress, run directory). Target: at most 1.3.

    .venv/bin/python bench/run_vs_script.py [--records N ...] [--rounds R]
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

SCRIPT = """
import sys, time, orjson
from mlsm_nb import load_notebook, run_models_all
from mlsm_nb.notebook.contract import find_notebooks

models = [load_notebook(p) for p in find_notebooks([sys.argv[1]])]
plain = [m for m in models if not hasattr(m, "models")]
summaries = [m for m in models if hasattr(m, "models")]
with open(sys.argv[2], "rb") as f:
    records = [orjson.loads(line) for line in f]
scored = run_models_all(plain, records, summaries)
stamp = int(time.time())
with open(sys.argv[3], "wb") as out:
    for r in scored:
        out.write(orjson.dumps({"id": r["id"], "run_id": "script", "_timestamp": stamp, "_current": 0,
                                "results": r["results"]}) + b"\\n")
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size; the median ratio is reported")
    parser.add_argument("--batch-size", type=int, default=None, help="default: mlsm-nb's default")
    args = parser.parse_args()
    notebooks = str(ROOT / "notebooks")
    for count in args.records:
        with tempfile.TemporaryDirectory(prefix="mlsm-bench-") as tmp:
            tmp = Path(tmp)
            leads = tmp / "leads.jsonl"
            save_leads(leads, count, seed=1)
            ratios, runs, scripts = [], [], []
            for round_ in range(args.rounds):
                script = timed([sys.executable, "-c", SCRIPT, notebooks, str(leads), str(tmp / "script.jsonl")])
                command = [sys.executable, "-m", "mlsm_nb.cli", "run", notebooks, "--records", str(leads),
                           "--out", str(tmp / "runs"), "--run-id", f"r{round_}", "--engine", "inprocess",
                           "--no-progress"]
                if args.batch_size:
                    command += ["--batch-size", str(args.batch_size)]
                run = timed(command)
                runs.append(run)
                scripts.append(script)
                ratios.append(run / script)
            run_s, script_s = statistics.median(runs), statistics.median(scripts)
            print(f"{count:>9,} leads: run {run_s:6.1f} s, script {script_s:6.1f} s, "
                  f"ratio run/script {statistics.median(ratios):.2f} (target <= 1.3; rounds: "
                  + ", ".join(f"{r:.2f}" for r in ratios) + ")", flush=True)


if __name__ == "__main__":
    main()
