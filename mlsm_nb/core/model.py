"""`Model` and `SummaryModel`: a score function with a name, version, status and fields.

MLSM's meanings (the function is called as ``fcn(data=..., results=...)``;
``execute`` fills ``results[name][version]``; ``test()`` answers True/False),
with its defects fixed:

- results live at ``results[name][version]``; a model never resets the other
  versions of its name (MLSM's `results[name] = {}` made versions overwrite
  each other);
- inputs are checked against the compiled field specs (type, nullability,
  bounds, allowed values), not only for presence;
- the function gets its own copy of its inputs, so a model that changes
  `data` changes neither the caller's record nor the next model's inputs;
- a failure becomes that model's ``{"_error", "_error_kind"}`` entry for that
  record instead of an exception that stops the run (``_error`` is MLSM's
  bare message; ``_error_type`` names the exception); a summary model whose
  dependency is missing or failed gets ``missing_dependency``.

Names and versions are any non-empty strings, as MLSM accepted them; the
stricter `NAME_PATTERN` is the notebook contract's rule (a notebook's name
becomes file and folder names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..exceptions import ConfigError, ModelTestError, NotebookError, ScoreError, describe_error
from .cells import raised_at
from .fields import compile_validator, generate_inputs, parse_fields
from .output import error_entry, stored_entry

STATUSES = ("draft", "active", "retired")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")


def model_key(name: str, version: str) -> str:
    """`name@version`: how a model is named in paths, manifests, logs and responses (the one place it is built)."""
    return f"{name}@{version}"


def split_model_key(key: str) -> tuple[str, str]:
    """(name, version) of a `name@version` key (a notebook's model name holds no "@")."""
    name, _, version = key.partition("@")
    return name, version


def _raised(exc: BaseException, message: str) -> dict:
    """The entry of a score that raised `exc`: its message, class and, when known, the cell and line."""
    entry = {"_error": message, "_error_kind": "score_raised", "_error_type": type(exc).__name__}
    at = raised_at(exc)
    if at is not None:
        entry["_error_at"] = at
    return entry


def _check_identity(name: Any, version: Any, status: Any, fcn: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f"model {name}: version must be a non-empty string, got {version!r}")
    if status not in STATUSES:
        raise ConfigError(f"model {name} {version}: status {status!r} is not one of {', '.join(STATUSES)}")
    if not callable(fcn):
        raise ConfigError(f"model {name} {version}: fcn must be callable, got {type(fcn).__name__}")


class Model:
    """A scoring model: ``fcn(data=..., results=...) -> dict`` over declared `fields`.

    `provenance` is filled in when the model comes from a notebook or bundle
    (path, sha256, git commit, extraction time); `score_frame` is the optional
    vectorised pandas form of `fcn`.
    """

    kind = "model"

    def __init__(self, name: str, fields: Mapping | None, version: str, fcn: Callable,
                 status: str = "draft", *, score_frame: Callable | None = None,
                 provenance: Mapping | None = None):
        _check_identity(name, version, status, fcn)
        self.name = name
        self.version = version
        self.fcn = fcn
        self.status = status
        self.fields = dict(fields or {})
        self.specs = parse_fields(self.fields)
        self.score_frame = score_frame
        self.provenance = dict(provenance or {})
        self.check_inputs = compile_validator(self.specs)

    @property
    def key(self) -> tuple[str, str]:
        """(name, version): what identifies a model in a run."""
        return self.name, self.version

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, version={self.version!r}, status={self.status!r})"

    def inputs(self, data: Any) -> Any:
        """This model's inputs from a record's `data` (nested or flat layout)."""
        if type(data) is dict or isinstance(data, Mapping):
            entry = data.get(self.name)
            if entry is None:
                return data
            if type(entry) is dict or isinstance(entry, Mapping):
                return entry.get(self.version)
        return None

    def _entry(self, data: Any, results: dict) -> dict:
        """Score one record's data into a result entry; never raises."""
        if type(data) is dict:  # the common case, inlined: this runs for every record and model
            nested = data.get(self.name)
            inputs = data if nested is None else (nested.get(self.version) if type(nested) is dict
                                                  else self.inputs(data))
        else:
            inputs = self.inputs(data)
        if inputs is None or not (type(inputs) is dict or isinstance(inputs, Mapping)):
            if isinstance(data, Mapping) and self.name in data:
                return error_entry("missing_field", f"data[{self.name!r}] has no inputs for version {self.version!r}")
            return error_entry("bad_type", f"record data must be a mapping, got {type(data).__name__}")
        problem = self.check_inputs(inputs)
        if problem is not None:
            return error_entry(*problem)
        try:
            out = self.fcn(data=inputs.copy() if type(inputs) is dict else dict(inputs), results=results)
        except Exception as exc:  # noqa: BLE001 - a model's bug must not stop the run
            return _raised(exc, str(exc))
        except SystemExit as exc:  # sys.exit() in score costs this record, not the run or the batch
            return _raised(exc, f"score called sys.exit({exc.code!r})")
        if type(out) is not dict:
            if not isinstance(out, Mapping):
                return error_entry("bad_output", f"score returned {type(out).__name__}, expected dict")
            out = dict(out)
        return {**out, "_status": self.status}

    def execute(self, data: Any, results: dict) -> dict:
        """Score `data` and store the entry at ``results[name][version]``.

        Returns `results` (MLSM's meaning); other versions of the model are kept.
        """
        entry = self._entry(data, results)
        slot = results.get(self.name)
        if slot is None:
            results[self.name] = {self.version: entry}
        else:
            slot[self.version] = entry
        return results

    def score(self, data: Any, results: Mapping | None = None) -> dict:
        """One record's outputs: the dict `score` returns for `data` (without `_status`), checked as a run
        checks it (`core.output`).

        `results` holds the results of the models it needs (a summary's). Raises ScoreError, naming the
        error kind and the field or exception, when a run would store an error for this record.
        """
        entry = stored_entry(self._entry(data, dict(results or {})))
        if "_error" in entry:
            raise ScoreError(f"{self.name} {self.version}", entry)
        entry.pop("_status", None)
        return entry

    def test(self, random_count: int = 50, seed: int = 0, *, raise_on_failure: bool = False) -> bool:
        """MLSM's self-check: does the model score inputs generated from `fields`?

        Tries typical, edge and random legal inputs (MLSM tried one). Returns
        True when every one scores to a valid output (as a run checks it: no
        NaN, ±inf or value JSON cannot hold, see `core.output`), else False;
        with ``raise_on_failure=True`` a failure raises ModelTestError, whose
        `failures` lists each failing input with its error entry.
        """
        failures = []
        for case in generate_inputs(self.specs, random_count=random_count, seed=seed):
            entry = stored_entry(self._entry(case, self._test_results()))
            if "_error" in entry:
                failures.append((case, entry))
        if failures and raise_on_failure:
            raise ModelTestError(f"{self.name} {self.version}", failures)
        return not failures

    def _test_results(self) -> dict:
        return {}


class SummaryModel(Model):
    """A model that runs after the others on their results.

    `models` lists the results it needs, as ``{"name": ..., "version": ...}``
    dicts (or Model objects); `fields`, optional, are read from its own data.
    """

    kind = "summary"

    def __init__(self, name: str, models: Iterable, version: str, fcn: Callable,
                 fields: Mapping | None = None, status: str = "draft", **kwargs):
        super().__init__(name, fields, version, fcn, status, **kwargs)
        self.models = [_dependency(name, version, m) for m in models]
        self._needs = tuple((m["name"], m["version"]) for m in self.models)

    def _entry(self, data: Any, results: dict) -> dict:
        for name, version in self._needs:
            found = results.get(name)
            found = found.get(version) if found is not None else None
            if found is None:
                return error_entry("missing_dependency", f"needs results of {name} {version}, which did not run")
            if "_error" in found:
                return error_entry("missing_dependency",
                                   f"{name} {version} failed on this record: {describe_error(found)}")
        if not self.specs:
            data = data if isinstance(data, Mapping) else {}
        return super()._entry(data, results)

    def _test_results(self) -> dict:
        """Plausible dependency results for test(): a numeric `score` each."""
        return {d["name"]: {d["version"]: {"score": 0.5, "_status": "active"}} for d in self.models}


def _dependency(owner: str, version: str, dep: Any) -> dict:
    if isinstance(dep, Model):
        return {"name": dep.name, "version": dep.version}
    if isinstance(dep, Mapping) and isinstance(dep.get("name"), str) and isinstance(dep.get("version"), str):
        return {"name": dep["name"], "version": dep["version"]}
    raise ConfigError(f"summary model {owner} {version}: each entry of `models` needs string "
                      f"'name' and 'version', got {dep!r}")


def build_model(declared: Mapping, namespace: Mapping, provenance: Mapping) -> Model:
    """A Model or SummaryModel from declarations (literals) and the executed namespace.

    The name follows the notebook rule (`NAME_PATTERN`): it becomes file and folder names.
    """
    if not isinstance(declared["name"], str) or not NAME_PATTERN.match(declared["name"]):
        raise NotebookError(provenance.get("source", "?"),
                            f"name {declared['name']!r} must match [a-z][a-z0-9_]* (lower case, digits, underscores)")
    common = dict(name=declared["name"], version=declared["version"], fcn=namespace["score"],
                  status=declared["status"], score_frame=namespace.get("score_frame"),
                  provenance=provenance)
    try:
        if declared["kind"] == "summary":
            return SummaryModel(models=declared["models"], fields=declared.get("fields"), **common)
        return Model(fields=declared["fields"], **common)
    except ConfigError as exc:
        raise NotebookError(provenance.get("source", "?"), str(exc)) from None
