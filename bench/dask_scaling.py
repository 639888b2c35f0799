"""In-process engine on Dask: 1 vs 2 LocalCluster workers, and Dask's overhead vs the local run.

N leads (default 1,000,000) through the example notebooks with `--engine inprocess`, measured in one
run: the local run (threads in one process), `--scheduler local:1` and `--scheduler local:2`.
Prints the speed-up of 2 workers over 1 (target >= 1.6) and Dask with 1 worker over the local run
(target <= 1.15).

    .venv/bin/python bench/dask_scaling.py [--records N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mlsm_nb.leads import save_leads
from mlsm_nb.run.orchestrate import run_notebooks

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def timed_run(records: Path, out: Path, run_id: str, batch_size: int, scheduler: str | None) -> float:
    start = time.perf_counter()
    manifest = run_notebooks([NOTEBOOKS], records, out=out, run_id=run_id, batch_size=batch_size,
                             engine="inprocess", scheduler=scheduler)
    assert manifest.status == "succeeded", manifest.error
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlsm-bench-dask-") as tmp:
        tmp = Path(tmp)
        records = tmp / "leads.jsonl"
        save_leads(records, args.records, seed=1)
        local = timed_run(records, tmp, "local", args.batch_size, None)
        one = timed_run(records, tmp, "dask1", args.batch_size, "local:1")
        two = timed_run(records, tmp, "dask2", args.batch_size, "local:2")
    print(f"records: {args.records:,}, batch size {args.batch_size:,}, in-process engine, 4 notebooks")
    print(f"local run:             {local:7.1f} s")
    print(f"Dask, 1 worker:        {one:7.1f} s")
    print(f"Dask, 2 workers:       {two:7.1f} s")
    print(f"speed-up 2 workers / 1 worker: {one / two:.2f}x (target >= 1.6)")
    print(f"overhead Dask 1 worker / local: {one / local:.2f}x (target <= 1.15)")


if __name__ == "__main__":
    main()
