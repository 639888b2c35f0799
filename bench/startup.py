"""What a process pays before work: importing nbformat, as every process that reads a notebook does.

Times, in fresh interpreters taking turns, `import nbformat` alone (jsonschema then loads
rfc3987_syntax, when JupyterLab brought it) against `import mlsm_nb, nbformat` (mlsm_nb defers it:
see mlsm_nb/_imports.py), and prints the medians and their ratio.

    .venv/bin/python bench/startup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

IMPORTS = {"nbformat alone": "import nbformat", "mlsm_nb first": "import mlsm_nb, nbformat"}


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(args.rounds):
        for name, code in IMPORTS.items():
            times[name].append(seconds(code))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:15} {median:6.2f} s (median of {args.rounds})")
    print(f"ratio nbformat alone / mlsm_nb first: {medians['nbformat alone'] / medians['mlsm_nb first']:.1f}")


if __name__ == "__main__":
    main()
