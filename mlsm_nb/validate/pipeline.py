"""`mlsm-nb validate`: lint, nbval, robustness, examples and parity for each notebook.

Per notebook: lint first (stop there if it fails); nbval re-executes the whole
notebook in a fresh kernel through pytest and compares outputs with the stored
ones; the model checks (see `checks`) run in a child process so that a notebook
that hangs or crashes while being extracted ends at the time limit instead of
taking the validator with it. Notebooks validate in parallel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .checks import CheckResult
from ..notebook.contract import find_notebooks, inspect_notebook

CHECKS = ("lint", "nbval", "robustness", "examples", "parity")
MODEL_CHECKS = ("robustness", "examples", "parity")
DEFAULT_SANITIZE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"


def _skipped(name: str, checks: Sequence[str], why: str) -> list[CheckResult]:
    return [CheckResult(name, check, "skipped", why) for check in checks]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def run_nbval(path: Path, *, lax: bool, timeout: float, sanitize: Path | None) -> CheckResult:
    """Re-execute the notebook with nbval (pytest plugin) and compare outputs with the stored ones."""
    started = time.perf_counter()
    name = str(path)
    with tempfile.TemporaryDirectory(prefix="mlsm-nbval-") as tmp:
        report = Path(tmp) / "nbval.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-c", str(Path(tmp) / "pytest.ini"),
                   "--rootdir", str(path.parent.resolve()), "-p", "no:cacheprovider",
                   "--nbval-lax" if lax else "--nbval", "--nbval-current-env",
                   f"--nbval-cell-timeout={timeout}", "--junitxml", str(report), str(path.resolve())]
        if sanitize:
            command += ["--nbval-sanitize-with", str(sanitize)]
        (Path(tmp) / "pytest.ini").write_text("[pytest]\n")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout * 4 + 60,
                                  cwd=path.parent.resolve())
        except subprocess.TimeoutExpired:
            return CheckResult(name, "nbval", "failed", f"did not finish within {timeout * 4 + 60:.0f} s",
                               time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if done.returncode == 0:
            cells = _nbval_cases(report)
            return CheckResult(name, "nbval", "passed", f"{len(cells)} cell(s) reproduced", seconds)
        failures = [c for c in _nbval_cases(report) if c[1]]
        if failures:
            cell, message = failures[0]
            more = f" (and {len(failures) - 1} more cell(s))" if len(failures) > 1 else ""
            return CheckResult(name, "nbval", "failed", f"{_cell_label(path, cell)}: {message}{more}", seconds)
        return CheckResult(name, "nbval", "failed", f"pytest --nbval exited {done.returncode}: "
                           f"{_tail(done.stdout + done.stderr)}", seconds)


def _nbval_cases(report: Path) -> list[tuple[str, str]]:
    """(test name, failure text or "") of each nbval test case in pytest's JUnit report."""
    if not report.is_file():
        return []
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        text = "" if problem is None else _tail(problem.get("message", "") + "\n" + (problem.text or ""), 4)
        cases.append((case.get("name", ""), text))
    return cases


def _cell_label(path: Path, test_name: str) -> str:
    """nbval names tests "Cell N" (N: the cell's index in the notebook); add its tag."""
    try:
        index = int(test_name.rsplit(" ", 1)[-1])
    except ValueError:
        return test_name
    spec, _ = inspect_notebook(path)
    tag = next((c.tag for c in spec.cells if c.index == index), None) if spec else None
    return f"cell {index}" + (f" [{tag}]" if tag else " (authoring)")


def _model_checks(path: Path, candidates: Sequence[Path], timeout: float) -> list[CheckResult]:
    """Run the model checks in a child process, bounded in time."""
    name = str(path)
    command = [sys.executable, "-m", "mlsm_nb.validate.pipeline", "--worker", str(path), str(timeout),
               *map(str, candidates)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout * 3 + 30)
    except subprocess.TimeoutExpired:
        return [CheckResult(name, check, "failed", f"timed out after {timeout * 3 + 30:.0f} s "
                            "(a production cell or score that never returns?)", time.perf_counter() - started)
                for check in MODEL_CHECKS]
    try:
        return [CheckResult(**r) for r in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError, TypeError):
        return [CheckResult(name, check, "failed", f"the check process died (exit {done.returncode}): "
                            f"{_tail(done.stderr)}", time.perf_counter() - started) for check in MODEL_CHECKS]


def _worker(path: Path, timeout: float, candidates: Sequence[Path]) -> list[CheckResult]:
    """Inside the child process: extract the model and run robustness, examples, parity."""
    from .checks import check_examples, check_parity, check_robustness, dependency_models
    from ..exceptions import MlsmError
    from ..notebook.extract import load_notebook
    from ..notebook.contract import lint_notebook

    name = str(path)
    spec = lint_notebook(path)
    started = time.perf_counter()
    try:
        model = load_notebook(path)
    except MlsmError as exc:
        return [CheckResult(name, check, "failed", f"extraction failed: {exc}", time.perf_counter() - started)
                for check in MODEL_CHECKS]
    dependencies: list = []
    if spec.kind == "summary":
        dependencies, problem = dependency_models(spec, candidates)
        if problem:
            failed = CheckResult(name, "robustness", "failed", problem)
            return [failed, check_examples(spec, model), CheckResult(name, "parity", "failed", problem)]
    return [check_robustness(spec, model, dependencies), check_examples(spec, model),
            check_parity(spec, model, dependencies, timeout=timeout)]


def validate_notebook(path: Path, candidates: Sequence[Path] = (), *, lax: bool = False, timeout: float = 600,
                      sanitize: Path | None = DEFAULT_SANITIZE, nbval: bool = True) -> list[CheckResult]:
    """Every check on one notebook, in order; later checks are skipped when lint fails.

    `nbval=False` leaves out re-executing the whole notebook (what `check()` does by default).
    """
    name = str(path)
    started = time.perf_counter()
    _, problems = inspect_notebook(path)
    if problems:
        lint = CheckResult(name, "lint", "failed", "; ".join(str(p) for p in problems), time.perf_counter() - started)
        return [lint, *_skipped(name, CHECKS[1:], "lint failed")]
    lint = CheckResult(name, "lint", "passed", "contract holds", time.perf_counter() - started)
    siblings = [p for p in sorted(path.parent.glob("*.ipynb")) if p != path]
    reproduced = (run_nbval(path, lax=lax, timeout=timeout, sanitize=sanitize) if nbval else
                  CheckResult(name, "nbval", "skipped", "not re-executed (check(full=True) does)"))
    return [lint, reproduced, *_model_checks(path, [*candidates, *siblings], timeout)]


def validate(paths: Sequence, *, lax: bool = False, timeout: float = 600, workers: int | None = None,
             sanitize: Path | None = DEFAULT_SANITIZE,
             on_notebook: Callable[[list[CheckResult]], None] | None = None) -> list[CheckResult]:
    """Validate every notebook under `paths` (in parallel); returns every check's result.

    `on_notebook` is called with each notebook's results as it finishes.
    """
    import os

    notebooks = find_notebooks(paths)
    workers = max(1, min(workers or os.cpu_count() or 1, len(notebooks) or 1))
    results: list[CheckResult] = []

    def one(path: Path) -> list[CheckResult]:
        found = validate_notebook(path, notebooks, lax=lax, timeout=timeout, sanitize=sanitize)
        if on_notebook:
            on_notebook(found)
        return found

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsm-validate") as pool:
        for found in pool.map(one, notebooks):
            results.extend(found)
    return results


def write_junit(results: Sequence[CheckResult], path: str | Path) -> None:
    """JUnit XML for Jenkins' junit step: one test case per notebook and check."""
    suite = ET.Element("testsuite", name="mlsm-nb validate", tests=str(len(results)),
                       failures=str(sum(r.status == "failed" for r in results)),
                       skipped=str(sum(r.status == "skipped" for r in results)),
                       time=f"{sum(r.seconds for r in results):.3f}")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=result.notebook, name=result.check,
                             time=f"{result.seconds:.3f}")
        if result.status == "failed":
            ET.SubElement(case, "failure", message=result.message[:1000]).text = result.message
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", message=result.message)
        elif result.message:
            ET.SubElement(case, "system-out").text = result.message
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites", name="mlsm-nb")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _path, _timeout, *_candidates = sys.argv[2:]
    _found = _worker(Path(_path), float(_timeout), [Path(c) for c in _candidates])
    print(json.dumps([r.to_dict() for r in _found]))
