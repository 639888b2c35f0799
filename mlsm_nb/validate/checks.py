"""The model checks behind `mlsm-nb validate` (and `check()` in a notebook).

- robustness: legal inputs generated from `fields` (edge cases, then property-
  based variety with hypothesis) must never make `score` raise or return an
  invalid output (not a dict; NaN, ±inf or a value JSON cannot hold: the
  definition runs use, `core.output`); the smallest failing input is reported;
- examples: every `examples` entry gives its `expected` outputs;
- robustness and examples warn (status "warning") when a `score` output is not
  a number: runs store it, but count no score for it;
- every input is scored within the per-record time limit (`--record-timeout`),
  as runs score records: one over it fails the check, naming the input;
- parity: the extracted Model gives exactly what the notebook's own cells give
  in a kernel, and `score_frame` agrees with `score`.

Each check returns a `CheckResult`; none raises for a model's failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.batch import input_frame, score_record
from ..core.fields import FieldSpec, generate_inputs
from ..core.model import Model
from ..core.output import score_warning
from ..core.scoring import run_models_all
from ..exceptions import MlsmError, cell_ref, describe_error
from ..notebook.contract import NotebookSpec

FAILURE_KINDS = ("score_raised", "bad_output", "timeout")
DEFAULT_RECORD_TIMEOUT = 60.0  # seconds one input may take to score: `mlsm-nb run`'s default
REL_TOL, ABS_TOL = 1e-6, 1e-9
# Numbers without a bound are tried within JSON's safe integers (beyond them most JSON readers lose
# precision): overflowing to inf only past 1e308, or past 64 bits, is not what a record brings.
SAFE_MAGNITUDE = 2 ** 53


@dataclass
class CheckResult:
    """The outcome of one check on one notebook."""

    notebook: str
    check: str
    status: str  # "passed", "warning" (passed, with something to look at), "failed" or "skipped"
    message: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "warning")

    def to_dict(self) -> dict:
        return asdict(self)


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def close_enough(expected, actual) -> bool:
    """Equal, with floats compared within a small tolerance (recursively)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL) or expected == actual
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(close_enough(expected[k], actual[k]) for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(map(close_enough, expected, actual))
    return expected == actual


def _strategy(specs: Sequence[FieldSpec]):
    """A hypothesis strategy of legal inputs for these field specs."""
    from hypothesis import strategies as st

    def one(spec: FieldSpec):
        low = spec.min if spec.min is not None else min(-SAFE_MAGNITUDE, spec.max if spec.max is not None else 0)
        high = spec.max if spec.max is not None else max(SAFE_MAGNITUDE, low)
        if spec.allowed:
            base = st.sampled_from(spec.allowed)
        elif spec.type == "int":
            base = st.integers(math.ceil(low), math.floor(high))
        elif spec.type == "float":
            base = (st.floats(low, high, allow_nan=False, allow_infinity=False)
                    | st.integers(math.ceil(low), math.floor(high)))
        elif spec.type == "str":
            base = st.text(max_size=40)
        else:
            base = st.booleans()
        return st.none() | base if spec.nullable else base

    return st.fixed_dictionaries({s.name: one(s) for s in specs if s.required},
                                 optional={s.name: one(s) for s in specs if not s.required})


def _entry(model: Model, data: Mapping, results: Mapping | None = None,
           limit: float | None = DEFAULT_RECORD_TIMEOUT) -> dict:
    """The entry a run would store for this input, scored within the per-record time `limit` (None: none)."""
    return score_record(model, data, results, limit)


def _fails(model: Model, data: Mapping, results: Mapping | None = None,
           limit: float | None = DEFAULT_RECORD_TIMEOUT) -> dict | None:
    entry = _entry(model, data, results, limit)
    return entry if entry.get("_error_kind") in FAILURE_KINDS else None


def _passed(name: str, check: str, message: str, seconds: float, warning: str | None, details=None) -> CheckResult:
    """A passing check's result, a "warning" when there is one to show."""
    if warning:
        return CheckResult(name, check, "warning", f"{message}; warning: {warning}", seconds, details or {})
    return CheckResult(name, check, "passed", message, seconds, details or {})


def _first_warning(model: Model, cases: Sequence[Mapping], say, limit: float | None) -> str | None:
    """The first case whose entry's `score` is not a number, worded by `say(case)`."""
    for case in cases:
        entry = _entry(model, case["data"], case.get("results"), limit)
        warning = "_error" not in entry and score_warning(entry)
        if warning:
            return f"{warning} ({say(case)})"
    return None


def summary_cases(summary: Model, dependencies: Sequence[Model], count: int = 60) -> list[dict]:
    """(data, results) cases for a summary: its dependencies scored on generated inputs."""
    specs: dict[str, FieldSpec] = {}
    for model in (*dependencies, summary):
        for spec in model.specs:
            specs.setdefault(spec.name, spec)
    records = [{"id": i, "data": data}
               for i, data in enumerate(generate_inputs(tuple(specs.values()), random_count=count, seed=7))]
    scored = run_models_all(list(dependencies), records)
    return [{"data": r["data"], "results": r["results"]} for r in scored]


def check_robustness(spec: NotebookSpec, model: Model, dependencies: Sequence[Model] = (),
                     max_examples: int = 200, limit: float | None = DEFAULT_RECORD_TIMEOUT) -> CheckResult:
    """Legal generated inputs never make `score` raise, return a non-dict or run over the per-record `limit`."""
    started = time.perf_counter()
    name = str(spec.path)
    if spec.kind == "summary":
        cases = summary_cases(model, dependencies)
        for case in cases:
            failure = _fails(model, case["data"], case["results"], limit)
            if failure:
                return CheckResult(name, "robustness", "failed",
                                   f"{failure['_error_kind']}: {describe_error(failure)} with model results "
                                   f"{_short(case['results'])}", time.perf_counter() - started)
        warning = _first_warning(model, cases, lambda case: f"with model results {_short(case['results'])}", limit)
        return _passed(name, "robustness", f"{len(cases)} generated model results", time.perf_counter() - started,
                       warning, {"inputs": len(cases)})
    cases = generate_inputs(model.specs, random_count=50)
    for data in cases:
        failure = _fails(model, data, None, limit)
        if failure:
            return CheckResult(name, "robustness", "failed",
                               f"{failure['_error_kind']}: {describe_error(failure)} on input {_short(data)}",
                               time.perf_counter() - started)
    found = _hypothesis_failure(model, max_examples, limit)
    seconds = time.perf_counter() - started
    if found is not None:
        failure_input, failure = found
        return CheckResult(name, "robustness", "failed",
                           f"{failure['_error_kind']}: {describe_error(failure)} on input {_short(failure_input)} "
                           "(smallest failing input found by hypothesis)", seconds)
    warning = _first_warning(model, [{"data": data} for data in cases], lambda case: f"on input {_short(case['data'])}",
                             limit)
    return _passed(name, "robustness", f"{len(cases)} edge and random inputs, {max_examples} hypothesis examples",
                   seconds, warning, {"inputs": len(cases) + max_examples})


def _hypothesis_failure(model: Model, max_examples: int, limit: float | None) -> tuple[dict, dict] | None:
    """(the smallest failing input hypothesis finds, its entry), or None. An input over the time limit is
    kept as hypothesis found it: shrinking would wait the limit for each input it tries."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    options = settings(max_examples=max_examples, database=None, deadline=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))
    failures: list[tuple[dict, dict]] = []  # every failing input tried, with its entry, the last smallest

    def fails(data) -> bool:
        if failures and failures[0][1]["_error_kind"] == "timeout":
            return data == failures[0][0]
        failure = _fails(model, data, None, limit)
        if failure is not None:
            failures.append((data, failure))
        return failure is not None

    try:
        found = find(_strategy(model.specs), fails, settings=options)
    except NoSuchExample:
        return None
    entry = next((entry for data, entry in reversed(failures) if data == found), None)
    return found, entry or {"_error_kind": "score_raised", "_error": "flaky failure"}


def check_examples(spec: NotebookSpec, model: Model, limit: float | None = DEFAULT_RECORD_TIMEOUT) -> CheckResult:
    """Every `examples` entry gives its `expected` outputs (each within the per-record time `limit`)."""
    started = time.perf_counter()
    name = str(spec.path)
    if not spec.examples:
        why = "its examples cell lists none" if spec.cell("examples") else "the notebook has no examples cell"
        return CheckResult(name, "examples", "skipped", why)
    warning = None
    for number, example in enumerate(spec.examples):
        entry = _entry(model, example["data"], example.get("results"), limit)
        if "_error" in entry:
            return CheckResult(name, "examples", "failed",
                               f"example {number}: {entry['_error_kind']}: {describe_error(entry)}",
                               time.perf_counter() - started)
        wrong = {k: entry.get(k, "<missing>") for k, v in example["expected"].items()
                 if not close_enough(v, entry.get(k))}
        if wrong:
            expected = {k: example["expected"][k] for k in wrong}
            return CheckResult(name, "examples", "failed",
                               f"example {number}: expected {_short(expected)}, got {_short(wrong)}",
                               time.perf_counter() - started)
        found = score_warning(entry)
        warning = warning or (found and f"example {number}: {found}")
    return _passed(name, "examples", f"{len(spec.examples)} example(s)", time.perf_counter() - started, warning)


def _parity_cases(spec: NotebookSpec, model: Model, dependencies: Sequence[Model],
                  limit: float | None) -> tuple[list[dict], list[dict]]:
    """(examples, generated inputs) that the model scores without an error (within the time limit)."""
    examples = [{"data": e["data"], "results": e.get("results", {})} for e in spec.examples]
    if spec.kind == "summary":
        generated = summary_cases(model, dependencies, count=30)
    else:
        generated = [{"data": data, "results": {}} for data in generate_inputs(model.specs, random_count=40, seed=3)]

    def scores(case):
        return "_error" not in _entry(model, case["data"], case["results"], limit)

    return [c for c in examples if scores(c)], [c for c in generated if scores(c)]


def check_parity(spec: NotebookSpec, model: Model, dependencies: Sequence[Model] = (),
                 timeout: float = 600, limit: float | None = DEFAULT_RECORD_TIMEOUT) -> CheckResult:
    """The extracted Model scores exactly as the notebook's own cells in a kernel; score_frame agrees. Inputs
    that give an error, or run over the per-record time `limit`, are not compared."""
    from ..notebook.parity import score_in_kernel

    started = time.perf_counter()
    name = str(spec.path)
    examples, generated = _parity_cases(spec, model, dependencies, limit)
    cases = examples + generated
    if not cases:
        return CheckResult(name, "parity", "failed", "nothing to compare: every example and generated input "
                           "gave an error (see robustness and examples), so the notebook and the extracted model "
                           "could not be compared", time.perf_counter() - started)
    try:
        in_kernel = score_in_kernel(spec, cases, timeout=timeout)
    except MlsmError as exc:
        return CheckResult(name, "parity", "failed", str(exc), time.perf_counter() - started)
    kernel_seconds = time.perf_counter() - started
    for case, expected in zip(cases, in_kernel, strict=False):
        try:
            got = model.fcn(case["data"], case["results"])
        except Exception as exc:  # noqa: BLE001
            got = {"raised": type(exc).__name__}
        if _jsonable(got) != expected:
            return CheckResult(name, "parity", "failed",
                               f"extracted model gives {_short(got)} but the notebook gives {_short(expected)} "
                               f"on input {_short(case['data'])}", time.perf_counter() - started)
    frame_problem = _frame_disagreement(model, [c["data"] for c in cases]) if spec.has_score_frame else None
    seconds = time.perf_counter() - started
    if frame_problem:
        return CheckResult(name, "parity", "failed", frame_problem, seconds)
    note = "; score_frame agrees with score" if spec.has_score_frame else ""
    return CheckResult(name, "parity", "passed", f"{len(cases)} inputs identical in a kernel "
                       f"({len(examples)} example(s), {len(generated)} generated){note}", seconds,
                       {"kernel_seconds": round(kernel_seconds, 3)})


def _jsonable(value):
    import json

    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _frame_disagreement(model: Model, datas: Sequence[Mapping]) -> str | None:
    """Where `score_frame` and `score` disagree on valid inputs (None when they agree)."""
    import pandas as pd

    rows = [d for d in datas if model.check_inputs(model.inputs(d)) is None]
    if not rows:
        return None
    frame = input_frame(model, rows)
    try:
        out = model.score_frame(frame)
    except Exception as exc:  # noqa: BLE001
        return f"score_frame raised {type(exc).__name__}: {exc}"
    if not isinstance(out, pd.DataFrame) or not out.index.equals(frame.index):
        return "score_frame must return a DataFrame with the input's index"
    for data, framed in zip(rows, out.to_dict("records"), strict=False):
        scored = model.fcn(data, {})
        if not close_enough(scored, framed):
            return f"score_frame gives {_short(framed)} but score gives {_short(scored)} on input {_short(data)}"
    return None


def dependency_models(spec: NotebookSpec, candidates: Sequence[Path],
                      timeout: float | None = None) -> tuple[list[Model], str | None]:
    """The models a summary names, loaded from `candidates` (paths given and its own folder).

    Returns (models, problem): problem names what is missing.
    """
    from ..notebook.contract import inspect_notebook
    from ..notebook.dependencies import missing_models
    from ..notebook.execute import load_notebook

    found: dict[tuple[str, str], Path] = {}
    for path in candidates:
        other, problems = inspect_notebook(path)
        if other is not None and not problems:
            found.setdefault((other.name, other.version), path)
    missing, others = missing_models(spec, found)
    if missing:
        there = f" (there: {', '.join(others)})" if others else ""
        return [], (f"{cell_ref(spec.cell('models').index, 'models')}: summary names {missing}, not found among the "
                    f"notebooks given or in its folder{there}")
    return [load_notebook(found[m["name"], m["version"]], timeout=timeout) for m in spec.models], None
