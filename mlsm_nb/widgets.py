"""Authoring helpers for JupyterLab: `tryout()` (a form to score a hand-made lead) and `check()`
(Jenkins' verdict on this notebook, before a push).

Both work with no argument inside a model notebook: `tryout()` uses the model
the notebook's cells just defined (the kernel's current `score`, `fields`, ...);
`check()` validates the notebook file (save it first) found from the kernel's
session. Run headless (papermill, nbconvert: a kernel with no notebook session)
they do nothing but say, in one line, that they are for JupyterLab, so a
notebook from the templates runs to the end anywhere.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path

from .core.fields import FieldSpec
from .core.model import Model
from .core.output import REASONS_KEY, reason_text, stored_entry
from .core.samples import sample_inputs
from .exceptions import ConfigError, cell_ref, describe_error
from .validate.checks import CheckResult

_MISSING_LABEL = "leave out"


def notebook_path() -> Path:
    """The path of the notebook this kernel runs, from its Jupyter session (JupyterLab, Notebook, VS Code)."""
    candidates = [os.environ.get("JPY_SESSION_NAME")]
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            candidates += [shell.user_ns.get("__session__"), shell.user_ns.get("__vsc_ipynb_file__")]
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError("cannot tell which notebook this kernel runs; pass its path, e.g. check('notebooks/x.ipynb')")


class ForJupyterLab:
    """What `check()` or `tryout()` gives in a kernel with no notebook session: one line saying so."""

    def __init__(self, call: str, elsewhere: str = ""):
        self.call = call
        self.elsewhere = elsewhere

    def __repr__(self) -> str:
        return (f"{self.call} is for JupyterLab: this kernel runs no notebook session (papermill, nbconvert), so it "
                f"does nothing here{self.elsewhere}")


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _session_notebook() -> Path | None:
    """The notebook this kernel runs; None in a kernel with no notebook session; ConfigError outside a kernel."""
    try:
        return notebook_path()
    except ConfigError:
        if _in_kernel():
            return None
        raise


def _current_model() -> Model:
    from IPython import get_ipython

    from .run.runtime import model_from_namespace

    shell = get_ipython()
    if shell is None or "score" not in shell.user_ns:
        raise ConfigError("run the notebook's cells first (Run All): no `score` is defined yet")
    return model_from_namespace(shell.user_ns)


def _resolve(target) -> Model:
    if target is None:
        return _current_model()
    if isinstance(target, Model):
        return target
    from .notebook.execute import load_notebook

    return load_notebook(target)


def _hint(spec: FieldSpec) -> str:
    """The field's limits in words, shown beside its box (the box itself never clamps a value)."""
    parts = []
    if spec.min is not None:
        parts.append(f"min {spec.min:g}")
    if spec.max is not None:
        parts.append(f"max {spec.max:g}")
    if spec.allowed:
        parts.append("one of " + ", ".join(map(str, spec.allowed)))
    if spec.nullable:
        parts.append("may be None")
    return "; ".join(parts)


class FieldInput:
    """The widget(s) for one field: the value, a "None" toggle, and "leave out" for optional fields.

    Values outside `min`/`max` or `allowed` are accepted as typed, so Score shows the error
    production would give for them.
    """

    def __init__(self, spec: FieldSpec, used_by: Sequence[str] = ()):
        import ipywidgets as w

        self.spec = spec
        style = {"description_width": "170px"}
        if spec.allowed and spec.type == "str":
            self.value = w.Combobox(options=[str(a) for a in spec.allowed], ensure_option=False,
                                    value=str(spec.allowed[0]), description=spec.name, style=style)
        elif spec.type == "bool":
            self.value = w.Checkbox(description=spec.name, indent=False)
        elif spec.type == "str":
            self.value = w.Text(description=spec.name, style=style)
        else:
            number = w.IntText if spec.type == "int" else w.FloatText
            self.value = number(description=spec.name, style=style)
        self.value.add_class(f"mlsm-field-{spec.name}")
        self.missing = w.Checkbox(description=_MISSING_LABEL, indent=False, value=False) if not spec.required else None
        # "None" on every field, nullable or not: trying what a missing value does is the point.
        self.null = w.Checkbox(description="None", indent=False, value=False)
        self.null.add_class(f"mlsm-none-{spec.name}")
        notes = [_hint(spec)] + ([f"read by {', '.join(used_by)}"] if used_by else [])
        note = w.HTML(f"<span style='color:#666'>{html.escape(' · '.join(n for n in notes if n))}</span>")
        note.add_class(f"mlsm-hint-{spec.name}")
        extras = [x for x in (self.missing, self.null) if x is not None]
        self.box = w.HBox([self.value, *extras, note])

    def controls(self) -> list:
        """The widgets whose change makes a shown result stale."""
        return [x for x in (self.value, self.missing, self.null) if x is not None]

    def read(self, into: dict) -> None:
        if self.missing is not None and self.missing.value:
            return
        into[self.spec.name] = None if self.null.value else self.value.value

    def fill(self, value) -> None:
        if self.missing is not None:
            self.missing.value = value is _ABSENT
        if value is _ABSENT:
            return
        self.null.value = value is None
        if value is not None:
            self.value.value = str(value) if self.spec.allowed and self.spec.type == "str" else value


_ABSENT = object()
_PROMPT = "<i>fill in the fields and press Score</i>"


class TryOut:
    """The try-out panel: one input per field, Score and Random lead buttons, the result.

    A summary's form asks each field of the models it needs once (records carry one value per
    field, whichever models read it).
    """

    def __init__(self, model: Model, dependencies: Sequence[Model] = ()):
        import ipywidgets as w

        self.model = model
        self.dependencies = list(dependencies)
        readers: dict[str, list[str]] = {}
        specs: dict[str, FieldSpec] = {}
        for source in self.models:
            for spec in source.specs:
                specs.setdefault(spec.name, spec)
                readers.setdefault(spec.name, []).append(source.name)
        shared = model.kind == "summary"
        self.fields: dict[str, FieldInput] = {
            name: FieldInput(spec, readers[name] if shared else ()) for name, spec in specs.items()}
        self.score_button = w.Button(description="Score", button_style="primary", icon="play")
        self.random_button = w.Button(description="Random lead", icon="random")
        self.output = w.HTML(value=_PROMPT)
        self.output.add_class("mlsm-result")
        self.score_button.on_click(lambda _: self.score())
        self.random_button.on_click(lambda _: self.randomise())
        for field_input in self.fields.values():
            for control in field_input.controls():
                control.observe(self._stale, names="value")
        self._seed = 0
        title = w.HTML(f"<b>Try {html.escape(model.name)} {html.escape(model.version)}</b> "
                       f"<span style='color:#666'>({html.escape(model.kind)})</span>")
        rows = [fi.box for fi in self.fields.values()]
        self.widget = w.VBox([title, *rows, w.HBox([self.score_button, self.random_button]), self.output])
        self.widget.add_class("mlsm-tryout")

    @property
    def models(self) -> list[Model]:
        """The models Score runs, in order: a summary's dependencies, then the model itself."""
        return [*self.dependencies, self.model] if self.model.kind == "summary" else [self.model]

    def _stale(self, change) -> None:
        if self.output.value != _PROMPT:
            self.output.value = "<i class='mlsm-stale'>inputs changed: press Score</i>"

    def data(self) -> dict:
        """The form's values as one flat data dict (every model reads its own fields)."""
        data: dict = {}
        for field_input in self.fields.values():
            field_input.read(data)
        return data

    def score(self) -> dict:
        """Run the models the panel shows on the form's values; show and return the entry."""
        data, results = self.data(), {}
        for model in self.models:
            model.execute(data, results)
        entry = stored_entry(results[self.model.name][self.model.version])  # checked as a run checks it
        self.output.value = render_entry(entry)
        return entry

    def randomise(self) -> None:
        """Fill the form with a sample record (legal and realistic: `core.samples`); the old result is cleared."""
        self._seed += 1
        case, = sample_inputs([spec for model in self.models for spec in model.specs], 1, seed=self._seed)
        for field_input in self.fields.values():
            field_input.fill(case.get(field_input.spec.name, _ABSENT))
        self.output.value = "<i class='mlsm-stale'>a random lead: press Score</i>"

    def _repr_mimebundle_(self, **kwargs):
        """The form where widgets show (JupyterLab); one line in a saved or headless run's output."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = (f"tryout(): a form to score {self.model.name} {self.model.version} by hand; "
                                "it shows in JupyterLab")
        return bundle


def render_entry(entry: Mapping) -> str:
    """A result entry as HTML: the outputs, or the error and its kind in red."""
    if "_error" in entry:
        return (f"<div class='mlsm-error' style='color:#b00020'><b>_error_kind: {html.escape(entry['_error_kind'])}"
                f"</b><br>_error: {html.escape(describe_error(entry))}</div>")
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td class='mlsm-out-{html.escape(str(k))}'>{_value_html(k, v)}</td></tr>"
                   for k, v in entry.items())
    return f"<table class='mlsm-ok'>{rows}</table>"


def _value_html(key, value) -> str:
    """An output's value as HTML; `_reasons` (valid: the entry was checked) as a list, largest first."""
    if key != REASONS_KEY:
        return html.escape(str(value))
    if not value:
        return "<i>none: no input moved the score</i>"
    items = "".join(f"<li>{html.escape(reason_text(item))}</li>" for item in value)
    return f"<ol class='mlsm-reasons' style='margin:0;padding-left:1.2em'>{items}</ol>"


def tryout(target=None) -> TryOut | ForJupyterLab:
    """A form to score hand-made inputs with this notebook's model (or `target`: a Model or a path).

    For a summary model, the form also holds the inputs of the models it needs
    (found beside the notebook).
    """
    if target is None and _in_kernel() and _session_notebook() is None:
        return ForJupyterLab("tryout()")
    model = _resolve(target)
    dependencies: list[Model] = []
    if model.kind == "summary":
        from .notebook.contract import lint_notebook
        from .validate.checks import dependency_models

        path = Path(target) if isinstance(target, (str, Path)) else notebook_path()
        spec = lint_notebook(path)
        dependencies, problem = dependency_models(spec, sorted(path.parent.glob("*.ipynb")))
        if problem:
            raise ConfigError(problem)
    return TryOut(model, dependencies)


def saved_at(path: Path) -> str:
    """The file's modification time, in UTC, as people read it."""
    from datetime import datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def unsaved_cells(path: Path) -> list[str]:
    """Production cells whose saved text this kernel has not run: the notebook changed since it was saved
    (or those cells were not run). Empty outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    from .notebook.contract import inspect_notebook

    shell = get_ipython()
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    spec, _ = inspect_notebook(path)
    if not history or spec is None:
        return []
    ran = {text.strip() for text in history}
    return [cell_ref(c.index, c.tag) for c in spec.cells if c.source.strip() not in ran]


class CheckReport:
    """`check()`'s verdict: one row per check, shown as an HTML table in the notebook.

    It names the saved version it checked (the file's time) and, when the kernel ran
    other versions of the production cells, warns that the check is of the saved file.
    """

    def __init__(self, path: Path, results: list[CheckResult], saved: str = "", unsaved: Sequence[str] = ()):
        self.path = path
        self.results = results
        self.saved = saved
        self.unsaved = list(unsaved)

    @property
    def passed(self) -> bool:
        """True when no check failed (what `mlsm-nb validate` would say, nbval aside unless full=True)."""
        return all(r.status != "failed" for r in self.results)

    @property
    def warning(self) -> str:
        if not self.unsaved:
            return ""
        cells = ", ".join(self.unsaved)
        return (f"this kernel has not run the saved version of {cells}: the checks are of the saved file; "
                f"re-run {cells} (Shift+Enter; save too if you changed it since), then run check() again")

    def _repr_html_(self) -> str:
        advice = {"lint": "fix the cell named; `mlsm-nb lint` lists every problem",
                  "nbval": "re-run all cells and save, or mark unstable outputs with # NBVAL_IGNORE_OUTPUT",
                  "robustness": "make score handle this legal input, or tighten `fields` to exclude it",
                  "examples": "fix score or the expected values",
                  "parity": "keep production state in tagged cells; make score_frame match score"}
        rows = []
        for r in self.results:
            colour = {"passed": "#1a7f37", "warning": "#9a6700", "failed": "#cf222e"}.get(r.status, "#666")
            todo = advice.get(r.check, "") if r.status == "failed" else ""
            rows.append(f"<tr class='mlsm-check-{r.status}'><td>{html.escape(r.check)}</td>"
                        f"<td style='color:{colour};font-weight:600'>{html.escape(r.status)}</td>"
                        f"<td>{html.escape(r.message)}</td><td>{html.escape(todo)}</td></tr>")
        verdict = "passes" if self.passed else "would fail in Jenkins"
        warning = (f"<div class='mlsm-unsaved' style='color:#9a6700'>⚠ {html.escape(self.warning)}</div>"
                   if self.warning else "")
        return (f"<div class='mlsm-check'><b>{html.escape(self.path.name)} {verdict}</b> "
                f"<span class='mlsm-saved' style='color:#666'>(the version saved at {html.escape(self.saved)})</span>"
                f"{warning}<table><tr><th>check</th><th>result</th><th>details</th><th>what to do</th></tr>"
                + "".join(rows) + "</table></div>")

    def __repr__(self) -> str:
        lines = [f"{self.path} (saved at {self.saved}): {'passed' if self.passed else 'FAILED'}"]
        lines += [f"  warning: {self.warning}"] if self.warning else []
        lines += [f"  {r.status:7} {r.check}: {r.message}" for r in self.results]
        return "\n".join(lines)


def check(path=None, full: bool = False, timeout: float = 300) -> CheckReport | ForJupyterLab:
    """Validate this notebook (or `path`) as `mlsm-nb validate` does: lint, robustness,
    examples, parity — and nbval when `full=True`.

    It checks the saved file (save first): the report names the version it checked (the
    file's time) and warns when this kernel ran other versions of the production cells,
    naming them. In a kernel with no notebook session (papermill, nbconvert) it does nothing.
    """
    from .validate.pipeline import validate_notebook

    own = path is None
    path = Path(path) if path else _session_notebook()
    if path is None:
        return ForJupyterLab("check()", "; `mlsm-nb validate` checks notebooks headless")
    saved = saved_at(path)
    results = validate_notebook(path, timeout=timeout, nbval=full)
    return CheckReport(path, results, saved, unsaved_cells(path) if own else ())
