"""`mlsm-nb validate`: lint, nbval, robustness, examples and parity for each notebook.

Per notebook: lint first (stop there if it fails); then everything runs in a
scratch copy of the notebook's folder, so validation never changes the
author's files: nbval re-executes the whole notebook in a fresh kernel through
pytest and compares outputs with the stored ones (its verdicts are rewritten
for people by `nbval_verdicts`); the model checks (see `checks`) run in a
child process so that a notebook that hangs or crashes while being extracted
ends at the time limit instead of taking the validator with it. Notebooks
validate in parallel.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from ..exceptions import cell_ref
from ..notebook.contract import NotebookSpec, find_notebooks, inspect_notebook
from .checks import DEFAULT_RECORD_TIMEOUT, CheckResult
from .nbval_verdicts import VERDICTS_ENV, plain

CHECKS = ("lint", "nbval", "robustness", "examples", "parity")
MODEL_CHECKS = ("robustness", "examples", "parity")
DEFAULT_SANITIZE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"


def _skipped(name: str, checks: Sequence[str], why: str) -> list[CheckResult]:
    return [CheckResult(name, check, "skipped", why) for check in checks]


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in plain(text).strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def run_nbval(path: Path, *, lax: bool, timeout: float, sanitize: Path | None) -> CheckResult:
    """Re-execute the notebook with nbval (pytest plugin) and compare outputs with the stored ones.

    Run it on a scratch copy (see `validate_notebook`): the notebook's cells may write files.
    """
    started = time.perf_counter()
    name = str(path)
    with tempfile.TemporaryDirectory(prefix="mlsm-nbval-") as tmp:
        report, verdicts = Path(tmp) / "nbval.xml", Path(tmp) / "verdicts.jsonl"
        command = [sys.executable, "-m", "pytest", "-q", "-c", str(Path(tmp) / "pytest.ini"),
                   "--rootdir", str(path.parent.resolve()), "-p", "no:cacheprovider",
                   "-p", "mlsm_nb.validate.nbval_verdicts", "--color=no",
                   "--nbval-lax" if lax else "--nbval", "--nbval-current-env",
                   f"--nbval-cell-timeout={timeout}", "--junitxml", str(report), str(path.resolve())]
        if sanitize:
            command += ["--nbval-sanitize-with", str(sanitize)]
        (Path(tmp) / "pytest.ini").write_text("[pytest]\n")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout * 4 + 60,
                                  cwd=path.parent.resolve(), env={**os.environ, VERDICTS_ENV: str(verdicts)})
        except subprocess.TimeoutExpired:
            return CheckResult(name, "nbval", "failed", f"did not finish within {timeout * 4 + 60:.0f} s, the time "
                               f"--timeout {timeout:g} allows re-executing the whole notebook (4 x {timeout:g} s "
                               "+ 60 s); give it longer with --timeout", time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if done.returncode == 0:
            cells = _nbval_cases(report)
            return CheckResult(name, "nbval", "passed", f"{len(cells)} cell(s) reproduced", seconds)
        found = [json.loads(line) for line in verdicts.read_text().splitlines()] if verdicts.is_file() else []
        if found:
            more = f" (and {len(found) - 1} more cell(s))" if len(found) > 1 else ""
            return CheckResult(name, "nbval", "failed", _say_verdict(path, found[0]) + more, seconds)
        return CheckResult(name, "nbval", "failed", f"pytest --nbval exited {done.returncode}: "
                           f"{_tail(done.stdout + done.stderr)}", seconds)


def _nbval_cases(report: Path) -> list[str]:
    """The names of the nbval test cases in pytest's JUnit report (one per code cell)."""
    if not report.is_file():
        return []
    return [case.get("name", "") for case in ET.parse(report).getroot().iter("testcase")]


def _say_verdict(path: Path, verdict: dict) -> str:
    """One nbval verdict for people: the notebook's cell (`cell_ref`), and what happened."""
    where = _cell_label(path, verdict["cell_num"])
    kind = verdict["kind"]
    if kind == "raised":
        line = f" at line {verdict['line']}" if verdict.get("line") else ""
        return f"{where} raised{line}: {verdict['error']}"
    if kind == "timeout":
        return (f"{where} did not finish within {verdict['seconds']:g} s; make it faster or give it longer "
                "with --timeout")
    if kind == "differs":
        return (f"{where}: the output differs from the saved one: expected {_quote(verdict['expected'])}, "
                f"got {_quote(verdict['actual'])}; re-run all cells and save, or mark an unstable output "
                "with # NBVAL_IGNORE_OUTPUT")
    return f"{where}: {verdict['message']}"


def _quote(text: str, limit: int = 200) -> str:
    text = text.rstrip("\n")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _cell_label(path: Path, code_cell: int) -> str:
    """nbval numbers code cells only, from 0; name the cell as JupyterLab does, with its tag (an untagged one
    with its first line)."""
    cells = nbformat.read(path, as_version=4).cells
    code = [index for index, cell in enumerate(cells) if cell.cell_type == "code"]
    if not 0 <= code_cell < len(code):
        return f"nbval's code cell {code_cell}"
    index = code[code_cell]
    spec, _ = inspect_notebook(path)
    tag = next((c.tag for c in spec.cells if c.index == index), "") if spec else ""
    return cell_ref(index, tag, None if tag else cells[index].source)


def _model_checks(path: Path, candidates: Sequence[Path], timeout: float,
                  record_timeout: float | None = DEFAULT_RECORD_TIMEOUT) -> list[CheckResult]:
    """Run the model checks in a child process (working directory: the notebook's folder), bounded in time."""
    name = str(path)
    command = [sys.executable, "-m", "mlsm_nb.validate.pipeline", "--worker", str(path), str(timeout),
               str(record_timeout or 0), *map(str, candidates)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout * 3 + 30,
                              cwd=path.parent)
    except subprocess.TimeoutExpired:
        per_record = f"--record-timeout {record_timeout:g} s" if record_timeout else "no --record-timeout"
        return [CheckResult(name, check, "failed", f"the model checks did not finish within {timeout * 3 + 30:.0f} s, "
                            f"the time --timeout {timeout:g} allows them (3 x {timeout:g} s + 30 s): a production "
                            f"cell that never returns, or many inputs each slow but within {per_record}? Give it "
                            "longer with --timeout, or less to each input with --record-timeout",
                            time.perf_counter() - started)
                for check in MODEL_CHECKS]
    try:
        return [CheckResult(**r) for r in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError, TypeError):
        return [CheckResult(name, check, "failed", f"the check process died (exit {done.returncode}): "
                            f"{_tail(done.stderr)}", time.perf_counter() - started) for check in MODEL_CHECKS]


def _worker(path: Path, timeout: float, candidates: Sequence[Path],
            record_timeout: float | None = DEFAULT_RECORD_TIMEOUT) -> list[CheckResult]:
    """Inside the child process: extract the model and run robustness, examples, parity (each input scored
    within `record_timeout` seconds, None: no limit)."""
    from ..exceptions import MlsmError
    from ..notebook.contract import lint_notebook
    from ..notebook.execute import load_notebook
    from .checks import check_examples, check_parity, check_robustness, dependency_models

    name = str(path)
    spec = lint_notebook(path)
    started = time.perf_counter()
    try:
        model = load_notebook(path, timeout=timeout)
    except MlsmError as exc:
        failed = CheckResult(name, MODEL_CHECKS[0], "failed", f"extraction failed: {exc}",
                             time.perf_counter() - started)
        return [failed, *_skipped(name, MODEL_CHECKS[1:], f"extraction failed (see {MODEL_CHECKS[0]})")]
    dependencies: list = []
    if spec.kind == "summary":
        dependencies, problem = dependency_models(spec, candidates, timeout=timeout)
        if problem:
            failed = CheckResult(name, "robustness", "failed", problem)
            return [failed, check_examples(spec, model, record_timeout), CheckResult(name, "parity", "failed", problem)]
    return [check_robustness(spec, model, dependencies, limit=record_timeout),
            check_examples(spec, model, record_timeout),
            check_parity(spec, model, dependencies, timeout=timeout, limit=record_timeout)]


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """Hidden folders (.git, .venv, .ipynb_checkpoints, ...) and caches: never what a notebook reads."""
    return {n for n in names if n in ("__pycache__", "node_modules")
            or (n.startswith(".") and os.path.isdir(os.path.join(folder, n)))}


@contextlib.contextmanager
def scratch_copy(path: Path):
    """A copy of the notebook's folder (see `_not_copied`) in a temporary directory; yields the copied notebook."""
    with tempfile.TemporaryDirectory(prefix="mlsm-validate-") as tmp:
        folder = Path(tmp) / (path.parent.resolve().name or "notebook")
        shutil.copytree(path.parent, folder, symlinks=True, ignore=_not_copied)
        yield folder / path.name


def _relocated(results: list[CheckResult], copy: Path, path: Path) -> list[CheckResult]:
    """Results about the scratch copy, told about the author's notebook."""
    for result in results:
        result.notebook = str(path)
        result.message = result.message.replace(str(copy.parent.resolve()), str(path.parent)).replace(
            str(copy.parent), str(path.parent))
    return results


def _missing_artifacts_verdict(spec: NotebookSpec, copy: Path) -> str:
    made = [a for a in spec.missing_artifacts if (copy.parent / a).is_file()]
    unmade = [a for a in spec.missing_artifacts if a not in made]
    said = []
    if made:
        said.append(f"the notebook's untagged cells create {', '.join(made)} when run (validate ran them in a "
                    "scratch copy; your folder is unchanged): run them, then commit the file(s) beside the notebook")
    if unmade:
        said.append(f"no cell of the notebook creates {', '.join(unmade)}")
    return "; ".join(said)


def validate_notebook(path: Path, candidates: Sequence[Path] = (), *, lax: bool = False, timeout: float = 600,
                      sanitize: Path | None = DEFAULT_SANITIZE, nbval: bool = True,
                      record_timeout: float | None = DEFAULT_RECORD_TIMEOUT) -> list[CheckResult]:
    """Every check on one notebook, in order; later checks are skipped when lint fails.

    The notebook runs in a scratch copy of its folder: its folder is never changed.
    `nbval=False` leaves out re-executing the whole notebook (what `check()` does by default).
    `timeout`: seconds a cell may run; `record_timeout`: seconds the model checks give each input
    (`mlsm-nb run --record-timeout`; None or 0: no limit).
    """
    path = Path(path)
    name = str(path)
    started = time.perf_counter()
    spec, problems = inspect_notebook(path, check_git=True, check_names=True)
    lint = CheckResult(name, "lint", "failed" if problems else "passed",
                       "; ".join(str(p) for p in problems) or "contract holds", time.perf_counter() - started)
    only_missing_artifacts = bool(problems) and spec is not None and len(problems) == len(spec.missing_artifacts)
    if problems and not only_missing_artifacts:
        return [lint, *_skipped(name, CHECKS[1:], "lint failed")]
    with scratch_copy(path) as copy:
        reproduced = (run_nbval(copy, lax=lax, timeout=timeout, sanitize=sanitize) if nbval else
                      CheckResult(name, "nbval", "skipped", "not re-executed (check(full=True) does)"))
        if only_missing_artifacts:
            found = _missing_artifacts_verdict(spec, copy) if nbval else ""
            lint.message += f"; {found}" if found else ""
            return [lint, *_relocated([reproduced], copy, path), *_skipped(name, MODEL_CHECKS, "lint failed")]
        here = path.parent.resolve()
        others = [c for c in candidates if Path(c).parent.resolve() != here]
        siblings = [p for p in sorted(copy.parent.glob("*.ipynb")) if p != copy]
        checked = _model_checks(copy, [*others, *siblings], timeout, record_timeout)
        return [lint, *_relocated([reproduced, *checked], copy, path)]


def validate(paths: Sequence, *, lax: bool = False, timeout: float = 600, workers: int | None = None,
             sanitize: Path | None = DEFAULT_SANITIZE, record_timeout: float | None = DEFAULT_RECORD_TIMEOUT,
             on_notebook: Callable[[list[CheckResult]], None] | None = None) -> list[CheckResult]:
    """Validate every notebook under `paths` (in parallel); returns every check's result.

    `on_notebook` is called with each notebook's results as it finishes.
    """
    import os

    notebooks = find_notebooks(paths)
    workers = max(1, min(workers or os.cpu_count() or 1, len(notebooks) or 1))
    results: list[CheckResult] = []

    def one(path: Path) -> list[CheckResult]:
        found = validate_notebook(path, notebooks, lax=lax, timeout=timeout, sanitize=sanitize,
                                  record_timeout=record_timeout)
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
    _path, _timeout, _record_timeout, *_candidates = sys.argv[2:]
    _found = _worker(Path(_path), float(_timeout), [Path(c) for c in _candidates], float(_record_timeout) or None)
    print(json.dumps([r.to_dict() for r in _found]))
