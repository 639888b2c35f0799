"""One loaded bundle, ready to serve: its models in run order, its manifest and hash.

A `ServedBundle` is built whole and never changed afterwards, so a request that
took a reference to one scores every record with the same models, whatever
swap happens meanwhile. Scoring is the batch runs' core: `score_batch` per
model in run order, the merge of entries into `results[name][version]`, so a
record scores identically whether served or run in a batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..clock import utc_now
from ..core.batch import BatchOutcome, score_batch
from ..core.ids import RequestIds
from ..core.model import Model, model_key
from ..core.records import check_records
from ..core.scoring import plan_run
from ..core.timelimit import SLOT, Board
from ..exceptions import BundleError, MlsmError
from ..notebook.bundle import MANIFEST, load_bundle
from .declared import module_outputs, module_parameters
from .timing import Timings


@dataclass
class Scored:
    """What scoring a request's records gave: result documents, rejected records, counts per model."""

    documents: list[dict]
    rejected: list[dict]
    outcomes: list = field(default_factory=list)  # BatchOutcome per model, in run order
    waited: float = 0.0  # seconds the records waited for their batch (adaptive batching; 0 when scored alone)


@dataclass(frozen=True)
class ServedBundle:
    """An extracted bundle loaded and checked; `sha256` is the hash of its manifest."""

    path: str
    sha256: str
    manifest: Mapping
    plan: tuple[Model, ...]
    loaded_at: str
    parameters: Mapping = field(default_factory=dict)  # (name, version) -> the parameters cell's defaults
    outputs: Mapping = field(default_factory=dict)  # (name, version) -> {output: type or None} (serve.declared)

    @cached_property
    def keys(self) -> dict[tuple[str, str], Model]:
        return {model.key: model for model in self.plan}

    @cached_property
    def drafts(self) -> list[str]:
        """The draft models, as name@version (every response lists them)."""
        return [model_key(*m.key) for m in self.plan if m.status == "draft"]

    def describe(self) -> dict:
        """The bundle in service, as /health and the live page show it."""
        origin = {k: self.manifest[k] for k in ("repository", "branch", "commit", "created_at") if k in self.manifest}
        return {"sha256": self.sha256, "path": self.path, "loaded_at": self.loaded_at, **origin,
                "models": [model_key(*m.key) for m in self.plan],
                "draft": self.drafts}

    def find(self, name: str, version: str | None = None) -> Model | None:
        """The model `name` (at `version`; without one: its only or only active version)."""
        if version is not None:
            return self.keys.get((name, version))
        versions = [m for m in self.plan if m.name == name]
        if len(versions) > 1:
            versions = [m for m in versions if m.status == "active"]
        return versions[0] if len(versions) == 1 else None

    def describe_model(self, model: Model, detail: bool = False) -> dict:
        """A model as /models lists it; with `detail`, its fields as JSON Schema and its parameters."""
        provenance = {k: model.provenance[k] for k in ("sha256", "git_commit", "source", "extracted_at")
                      if k in model.provenance}
        out = {"name": model.name, "version": model.version, "status": model.status, "kind": model.kind,
               "draft": model.status == "draft", "provenance": provenance}
        if model.kind == "summary":
            out["models"] = [dict(m) for m in model.models]
        if detail:
            out["fields"] = fields_schema(model)
            out["parameters"] = dict(self.parameters.get(model.key, {}))
        return out

    def plan_for(self, model: Model) -> tuple[Model, ...]:
        """`model` and, for a summary, the models it needs, in run order."""
        needed = {model.key}
        for candidate in reversed(self.plan):
            if candidate.key in needed:
                needed.update((d["name"], d["version"]) for d in getattr(candidate, "models", ()))
        return tuple(m for m in self.plan if m.key in needed)

    def check(self, records: Sequence[Any], id_field: str = "id") -> tuple[list[dict], list[dict]]:
        """A request's records checked on their own: the scorable ones, and the rejected ones (position
        in the request, id, reason)."""
        good, rejected = [], []
        for position, checked in check_records(list(enumerate(records)), id_field, RequestIds(), "at position"):
            if isinstance(checked, dict):
                good.append(checked)
            else:
                rejected.append({"position": position, "id": checked.record_id, "reason": checked.reason})
        return good, rejected

    def score_checked(self, good: Sequence[Mapping], plan: Sequence[Model] | None = None, *,
                      limit: float | None = None, board: Board | None = None,
                      stuck: Mapping[int, Mapping[int, float]] | None = None) -> list[BatchOutcome]:
        """Score checked records with every model of `plan` (default: the bundle's), in run order: the
        batch runs' core, one `BatchOutcome` per model; never raises for a record.

        `limit`: seconds one record may take per model (None: no limit); `board`: where each model's loop
        says what it scores, its SLOT cell set to the model's place in the plan; `stuck`: per place, the
        positions of records found stuck before (see `core.timelimit`)."""
        entries: dict[tuple[str, str], list[dict]] = {}
        outcomes = []
        board, stuck = board if board is not None else Board(), stuck or {}
        for slot, model in enumerate(plan or self.plan) if good else ():
            needs = {(d["name"], d["version"]): entries[d["name"], d["version"]] for d in getattr(model, "models", ())}
            board.cells[SLOT] = slot
            outcomes.append(score_batch(model, good, needs, limit=limit, board=board, stuck=stuck.get(slot)))
            entries[model.key] = outcomes[-1].entries
        return outcomes

    @staticmethod
    def documents(good: Sequence[Mapping], rejected: list[dict], outcomes: Sequence[BatchOutcome], *,
                  id_field: str = "id", run_id: str = "serve") -> Scored:
        """The result documents of `good` from its models' outcomes (entries in the same order)."""
        timestamp = int(time.time())
        documents = []
        for i, record in enumerate(good):
            results: dict = {}
            for outcome in outcomes:
                results.setdefault(outcome.model, {})[outcome.version] = outcome.entries[i]
            documents.append({id_field: record[id_field], "run_id": run_id, "_timestamp": timestamp,
                              "_current": 0, "results": results})
        return Scored(documents, rejected, list(outcomes))

    def score(self, records: Sequence[Any], *, id_field: str = "id", run_id: str = "serve",
              plan: Sequence[Model] | None = None, timings: Timings | None = None) -> Scored:
        """Score `records` (the batch record format) into result documents; never raises for a record.

        `timings` gets the `check` and `score` stages.
        """
        good, rejected = self.check(records, id_field)
        if timings is not None:
            timings.lap("check")
        scored = self.documents(good, rejected, self.score_checked(good, plan), id_field=id_field, run_id=run_id)
        if timings is not None:
            timings.lap("score")
        return scored


_JSON_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}


def fields_schema(model: Model) -> dict:
    """A model's declared fields as a JSON Schema (draft 2020-12) object schema."""
    properties, required = {}, []
    for spec in model.specs:
        prop: dict = {"type": [_JSON_TYPES[spec.type], "null"] if spec.nullable else _JSON_TYPES[spec.type]}
        if spec.min is not None:
            prop["minimum"] = spec.min
        if spec.max is not None:
            prop["maximum"] = spec.max
        if spec.allowed is not None:
            prop["enum"] = list(spec.allowed)
        properties[spec.name] = prop
        if spec.required:
            required.append(spec.name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": properties, "required": required}


def manifest_signature(bundle_dir: str | Path) -> tuple | None:
    """What changes when a new bundle lands in `bundle_dir` (None: no manifest there now)."""
    path = Path(bundle_dir)
    try:
        real = path.resolve(strict=True)
        stat = (real / MANIFEST).stat()
    except OSError:
        return None
    return str(real), stat.st_ino, stat.st_mtime_ns, stat.st_size


def load_served_bundle(bundle_dir: str | Path) -> ServedBundle:
    """Load and check the bundle at `bundle_dir` (following a symlink); BundleError if it cannot serve.

    Checks: the manifest reads, every module and artifact matches its hash and
    runs, the models form a valid run (no duplicates, every summary's models
    present), and the manifest did not change while loading.
    """
    real = Path(bundle_dir).resolve()
    manifest_path = real / MANIFEST
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: no readable {MANIFEST} ({exc})") from None
    try:
        models = load_bundle(real)
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{bundle_dir}: {MANIFEST} is malformed ({type(exc).__name__}: {exc})") from None
    plan = plan_run([m for m in models if m.kind != "summary"], [m for m in models if m.kind == "summary"])
    try:
        if manifest_path.read_bytes() != raw:
            raise BundleError(f"{bundle_dir}: the bundle changed while it was loading; will load it again")
    except OSError as exc:
        raise BundleError(f"{bundle_dir}: the bundle went away while it was loading ({exc})") from None
    texts = {(e["name"], e["version"]): (real / e["module"]).read_text() for e in manifest["models"]}
    return ServedBundle(str(real), hashlib.sha256(raw).hexdigest(), manifest, plan, utc_now(),
                        {key: module_parameters(text) for key, text in texts.items()},
                        {key: module_outputs(text) for key, text in texts.items()})


def load_error_line(exc: BaseException) -> str:
    """One line for a bundle that could not be loaded (mlsm-nb's message, else the exception's name)."""
    if isinstance(exc, MlsmError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
