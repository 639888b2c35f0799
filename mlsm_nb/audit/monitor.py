"""`mlsm-nb monitor`: each active model version of a run checked against thresholds, for alerts.

Four checks per model version (``CHECKS``), each against a threshold
(``DEFAULTS``, overridden per ``name@version`` by a TOML file):

- ``error_rate``: the share of the run's records the model failed on (the
  run's own count, as `run --max-error-rate` judges it); at most
  ``max_error_rate``.
- ``psi``: the population stability index of the run's scores against the
  reference run's (``core.stats.psi``); at most ``max_psi``. Each run needs
  ``min_scores`` scores.
- ``auc``: AUC over the last ``window`` labelled scores of the run (scores
  whose record has an outcome, the latest observed last) against the model's
  AUC over every labelled score of the reference run; at least the reference
  less ``max_auc_drop``.
- ``conversion``: the conversion rate of the top-scored tenth (decile 1,
  ``audit.metrics.deciles``) over the same window, against the reference's;
  at least the reference times ``1 - max_conversion_drop``.

AUC and conversion need ``min_labelled`` labelled scores in both periods. A
check that lacks data (too few labelled scores, no outcomes, no reference run
or the model not in it) is reported as not checked, with the reason: neither
passed nor breached. The reference is the run started last before the run
monitored, or the one named.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import utc_now
from ..core.model import model_key
from ..core.output import is_score
from ..core.stats import PSI_THRESHOLD, psi
from ..exceptions import SettingsError
from ..files import write_json
from ..run.settings import DEFAULT_MAX_ERROR_RATE
from ..store.manifest import Manifest
from ..store.rundir import MANIFEST, RunDirectory
from .database import AuditDatabase, as_plain
from .metrics import auc, deciles, join_outcomes
from .outcomes import run_outcomes

MONITOR_FILE = "monitor.json"
CHECKS = ("error_rate", "psi", "auc", "conversion")
DEFAULT_WINDOW = 1000
DEFAULTS = {
    "max_error_rate": DEFAULT_MAX_ERROR_RATE,  # as `mlsm-nb run --max-error-rate`
    "max_psi": PSI_THRESHOLD,
    "max_auc_drop": 0.05,  # AUC points below the reference
    "max_conversion_drop": 0.25,  # share of the reference's top-decile conversion rate that may be lost
    "min_labelled": 200,  # labelled scores AUC and conversion need, in each period
    "min_scores": 100,  # scores PSI needs, in each run
}
_BOUNDS = {  # what each threshold may be: beyond these it could never be met (or never fail)
    "max_error_rate": (0.0, 1.0), "max_psi": (0.0, math.inf), "max_auc_drop": (0.0, 1.0),
    "max_conversion_drop": (0.0, 1.0), "min_labelled": (1, math.inf), "min_scores": (1, math.inf),
}
OK, BREACH, NOT_CHECKED = "ok", "breach", "not checked"
NO_REFERENCE = "no reference run"


class MonitorError(SettingsError):
    """Nothing to monitor as asked: no run, an unknown reference, outcomes of several labels and none chosen
    (exit 2, as any usage error: exit 1 stays a breach's)."""


class ThresholdsError(SettingsError):
    """A thresholds file (or option) that cannot be used: the CLI's exit 2."""


# -- thresholds ---------------------------------------------------------------------------------------------

def _checked_value(where: str, key: str, value) -> float | int:
    if key not in DEFAULTS:
        raise ThresholdsError(f"{where}: unknown threshold {key!r} (known: {', '.join(DEFAULTS)})")
    integer = key.startswith("min_")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ThresholdsError(f"{where}: {key} = {value!r} must be {'a whole number' if integer else 'a number'}")
    low, high = _BOUNDS[key]
    if not low <= value <= high:
        span = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise ThresholdsError(f"{where}: {key} = {value!r} can never be met; it must be {span}")
    return value


def load_thresholds(path: str | Path | None, window: int = DEFAULT_WINDOW) -> dict[str, dict]:
    """The thresholds of a TOML file: ``{"defaults": {...}, "name@version": {...}}``, every table complete.

    The file holds an optional ``[defaults]`` table and one ``["name@version"]`` table per model version,
    each setting some of ``DEFAULTS``' keys. Raises ThresholdsError naming the file, table and key for a file
    that is not TOML, a table that is neither, an unknown key, a value of the wrong type or one that can never
    be met (``min_labelled`` above `window` included).
    """
    tables: dict = {}
    if path is not None:
        path = Path(path)
        try:
            tables = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ThresholdsError(f"{path}: no such thresholds file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ThresholdsError(f"{path}: not a TOML file ({exc})") from None
    defaults = dict(DEFAULTS)
    found = {}
    for name in ["defaults", *[n for n in tables if n != "defaults"]]:
        table = tables.get(name, {})
        where = f"{path}: [{name}]" if path else "the default thresholds"
        if not isinstance(table, dict):
            raise ThresholdsError(f"{path}: {name} = {table!r} is outside any table: put it under [defaults] or "
                                  '["name@version"]')
        if name != "defaults" and ("@" not in name or not all(name.partition("@")[::2])):
            raise ThresholdsError(f"{path}: table [{name}] must be named name@version (or be [defaults])")
        values = {key: _checked_value(where, key, value) for key, value in table.items()}
        found[name] = {**defaults, **values}
        if name == "defaults":
            defaults = found[name]
        if found[name]["min_labelled"] > window:
            raise ThresholdsError(f"{where}: min_labelled = {found[name]['min_labelled']} is over --window {window}: "
                                  "AUC and conversion could never be checked (widen the window, or lower "
                                  "min_labelled in a thresholds file)")
    return found


def thresholds_for(key: str, thresholds: Mapping[str, dict]) -> dict:
    """The thresholds of one model version: its table, else the defaults."""
    return thresholds.get(key) or thresholds.get("defaults") or dict(DEFAULTS)


# -- the periods compared -----------------------------------------------------------------------------------

@dataclass
class Period:
    """One run as monitoring sees it: its manifest, result documents and the outcomes of its ids."""

    manifest: Manifest
    documents: list[dict]
    outcomes: list[dict]
    id_field: str = "id"

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def active(self) -> list[tuple[str, str]]:
        """(name, version) of the run's active notebooks, in manifest order."""
        return [(n.name, n.version) for n in self.manifest.notebooks if n.status == "active"]

    def scores(self, name: str, version: str) -> list[float]:
        found = []
        for document in self.documents:
            entry = document.get("results", {}).get(name, {}).get(version, {})
            if is_score(entry.get("score")):
                found.append(float(entry["score"]))
        return found

    def labelled(self, label: str | None) -> dict[str, list[tuple[float, int]]]:
        """Per model key, its (score, outcome) pairs, the outcome observed latest last (ties: run order)."""
        chosen = [o for o in self.outcomes if label is None or o.get("label") == label]
        seen = {(type(o[self.id_field]), o[self.id_field]): str(o.get("observed_at") or "") for o in chosen}
        models = join_outcomes(self.documents, chosen, self.id_field, label=label)
        return {key: [pair for record, pair in sorted(model.pairs.items(), key=lambda item: seen[item[0]])]
                for key, model in models.items()}


def _run_order(manifest: Manifest) -> tuple[str, str]:
    return str(manifest.started_at or ""), manifest.run_id


def _run_directory_period(run: RunDirectory) -> Period:
    manifest = run.read_manifest()
    return Period(manifest, list(run.results()), run_outcomes(run.root), manifest.id_field)


def _reference_directory(run: RunDirectory, manifest: Manifest, reference: str | None) -> RunDirectory | None:
    """The run directory beside `run` named `reference` (its folder name or run id), else the one started
    last before it; None when there is none."""
    siblings = [RunDirectory(p) for p in sorted(run.root.resolve().parent.iterdir())
                if (p / MANIFEST).is_file() and p.resolve() != run.root.resolve()]
    if reference is not None:
        for sibling in siblings:
            if reference in (sibling.root.name, sibling.read_manifest().run_id):
                return sibling
        raise MonitorError(f"--reference {reference}: no run directory of that run id beside {run.root} "
                           f"(in {run.root.resolve().parent})")
    earlier = [(s, _run_order(s.read_manifest())) for s in siblings]
    earlier = [(s, order) for s, order in earlier if order < _run_order(manifest)]
    return max(earlier, key=lambda pair: pair[1])[0] if earlier else None


def periods_from_directory(run_dir: str | Path, reference: str | None = None) -> tuple[Period, Period | None]:
    """The run directory's period and its reference's (the runs beside it in its folder)."""
    run = RunDirectory(run_dir)
    if not run.manifest_path.is_file():
        raise MonitorError(f"{run_dir}: not a run directory (no {MANIFEST})")
    current = _run_directory_period(run)
    other = _reference_directory(run, current.manifest, reference)
    return current, _run_directory_period(other) if other else None


def periods_from_database(database: AuditDatabase, run_id: str | None = None,
                          reference: str | None = None) -> tuple[Period, Period | None]:
    """The period of run `run_id` (default: the batch run started last) in MongoDB and its reference's."""
    runs = [Manifest.from_dict(r) for r in database.run_manifests() if r.get("notebooks")]
    if not runs:
        raise MonitorError(f"MongoDB ({database.store.db.name}.{database.runs.name}) holds no run to monitor")
    runs.sort(key=_run_order)
    by_id = {m.run_id: m for m in runs}
    if run_id is not None and run_id not in by_id:
        raise MonitorError(f"run {run_id} is not in MongoDB ({database.store.db.name}.{database.runs.name})")
    if reference is not None and reference not in by_id:
        raise MonitorError(f"--reference {reference}: no such run in MongoDB "
                           f"({database.store.db.name}.{database.runs.name})")
    current = by_id[run_id] if run_id else runs[-1]
    earlier = [m for m in runs if _run_order(m) < _run_order(current)]
    other = by_id[reference] if reference else (earlier[-1] if earlier else None)

    def period(manifest: Manifest) -> Period:
        documents = database.documents_of_run(manifest.run_id)
        ids = [d[database.id_field] for d in documents]
        return Period(manifest, documents, database.outcomes_for(ids) if ids else [], database.id_field)

    return period(current), period(other) if other else None


# -- the checks ---------------------------------------------------------------------------------------------

@dataclass
class Check:
    """One check of one model version: its value, the limit it is held to, and how it came out."""

    check: str
    status: str
    value: float | None = None
    threshold: float | None = None  # the limit the value is held to (a maximum or a minimum, see `rule`)
    rule: str = "max"
    reference: float | None = None
    records: int | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ModelChecks:
    name: str
    version: str
    thresholds: dict
    checks: list[Check] = field(default_factory=list)

    @property
    def key(self) -> str:
        return model_key(self.name, self.version)

    def to_dict(self) -> dict:
        return {"model": self.name, "version": self.version, "thresholds": self.thresholds,
                "checks": [c.to_dict() for c in self.checks]}


def _held(check: str, value: float, threshold: float, rule: str, **facts) -> Check:
    over = value > threshold if rule == "max" else value < threshold
    return Check(check, BREACH if over else OK, value, threshold, rule, **facts)


def _error_rate(current: Period, key: str, limits: dict) -> Check:
    counts = current.manifest.models.get(key) or {}
    if not counts.get("records"):
        return Check("error_rate", NOT_CHECKED, threshold=limits["max_error_rate"], records=0,
                     reason="the run scored no record with this model")
    return _held("error_rate", counts["error_rate"], limits["max_error_rate"], "max",
                 records=counts["records"])


def _psi(current: Period, reference: Period | None, name: str, version: str, limits: dict) -> Check:
    threshold, needed = limits["max_psi"], limits["min_scores"]
    if reference is None:
        return Check("psi", NOT_CHECKED, threshold=threshold, reason=NO_REFERENCE)
    ours, theirs = current.scores(name, version), reference.scores(name, version)
    for scores, which in ((ours, "this run"), (theirs, f"reference run {reference.run_id}")):
        if len(scores) < needed:
            return Check("psi", NOT_CHECKED, threshold=threshold, records=len(ours),
                         reason=f"{len(scores)} score(s) in {which}, fewer than min_scores {needed}")
    return _held("psi", psi(theirs, ours), threshold, "max", records=len(ours))


def _top_rate(pairs: list[tuple[float, int]]) -> float:
    return deciles([s for s, _ in pairs], [y for _, y in pairs])[0]["rate"]


def _labelled_checks(ours: list, theirs: list | None, reference: Period | None, limits: dict) -> list[Check]:
    """AUC and conversion over the window `ours` against the reference period's labelled scores `theirs`."""
    needed, drop, lost = limits["min_labelled"], limits["max_auc_drop"], limits["max_conversion_drop"]
    reason = None
    if reference is None:
        reason = NO_REFERENCE
    elif not ours:
        reason = "no outcomes for this run's scores (attach them with `mlsm-nb outcomes`)"
    elif len(ours) < needed:
        reason = f"{len(ours)} labelled score(s), fewer than min_labelled {needed}"
    elif len(theirs or ()) < needed:
        reason = f"{len(theirs or ())} labelled score(s) in reference run {reference.run_id}, " \
                 f"fewer than min_labelled {needed}"
    if reason is None:
        value, was = auc(*zip(*ours, strict=True)), auc(*zip(*theirs, strict=True))
        if value is None or was is None:
            reason = "outcomes of one class only: AUC is not defined"
    if reason is not None:
        return [Check(name, NOT_CHECKED, records=len(ours), reason=reason) for name in ("auc", "conversion")]
    top, top_was = _top_rate(ours), _top_rate(theirs)
    return [_held("auc", value, was - drop, "min", reference=was, records=len(ours)),
            _held("conversion", top, top_was * (1 - lost), "min", reference=top_was, records=len(ours))]


def check_models(current: Period, reference: Period | None, thresholds: Mapping[str, dict],
                 window: int = DEFAULT_WINDOW, label: str | None = None) -> list[ModelChecks]:
    """Every check of every active model version of `current` (see the module docstring)."""
    label = label or _only_label(current.outcomes + (reference.outcomes if reference else []))
    ours = current.labelled(label)
    theirs = reference.labelled(label) if reference else {}
    found = []
    for name, version in current.active():
        key = model_key(name, version)
        limits = thresholds_for(key, thresholds)
        model = ModelChecks(name, version, limits)
        model.checks = [_error_rate(current, key, limits), _psi(current, reference, name, version, limits),
                        *_labelled_checks(ours.get(key, [])[-window:], theirs.get(key), reference, limits)]
        found.append(model)
    return found


def _only_label(outcomes: Iterable[Mapping]) -> str | None:
    labels = sorted({str(o.get("label")) for o in outcomes})
    if len(labels) > 1:
        raise MonitorError(f"outcomes of several labels ({', '.join(labels)}): choose one with --label")
    return labels[0] if labels else None


# -- the whole -----------------------------------------------------------------------------------------------

def monitor_run(*, run: str | Path | None = None, database: AuditDatabase | None = None, reference: str | None = None,
            window: int = DEFAULT_WINDOW, thresholds: str | Path | None = None, label: str | None = None) -> dict:
    """Check the active model versions of a run directory, or of MongoDB's last run (of `run`'s run when
    both are given), and record the findings: `monitor.json` in the run directory, a document in MongoDB's
    `monitor` collection. Returns what was recorded (see docs/operators.md, "Alerts").

    Raises ThresholdsError for thresholds that cannot be used, MonitorError when there is nothing to monitor.
    """
    if run is None and database is None:
        raise MonitorError("say what to monitor: RUN_DIR or --mongo-uri URI")
    if window < 1:
        raise ThresholdsError(f"--window {window}: must be at least 1")
    limits = load_thresholds(thresholds, window)
    if database is not None:
        run_id = RunDirectory(run).read_manifest().run_id if run is not None else None
        current, other = periods_from_database(database, run_id, reference)
    else:
        current, other = periods_from_directory(run, reference)
    models = check_models(current, other, limits, window, label)
    active = {model.key for model in models}
    found = {"run_id": current.run_id, "reference": other.run_id if other else None, "checked_at": utc_now(),
             "window": window, "thresholds_file": str(thresholds) if thresholds else None,
             "source": "MongoDB" if database is not None else "run directory",
             "models": [m.to_dict() for m in models],
             "unmatched_thresholds": sorted(k for k in limits if k != "defaults" and k not in active)}
    statuses = [c.status for m in models for c in m.checks]
    found.update(breaches=statuses.count(BREACH), not_checked=statuses.count(NOT_CHECKED), checks=len(statuses))
    if run is not None:
        write_json(Path(run) / MONITOR_FILE, found)
    if database is not None:
        database.insert_monitor(dict(found))
    return found


def read_monitor(run_dir: str | Path | None = None, database: AuditDatabase | None = None,
                 run_id: str | None = None) -> dict | None:
    """What `monitor` last recorded: a run directory's `monitor.json`, else MongoDB's newest `monitor` document
    (of `run_id` when given); None when there is none."""
    if run_dir is not None and (Path(run_dir) / MONITOR_FILE).is_file():
        import json

        return json.loads((Path(run_dir) / MONITOR_FILE).read_text(encoding="utf-8"))
    if database is not None:
        found = database.latest_monitor(run_id)
        return as_plain(found) if found else None
    return None


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def breach_lines(found: Mapping) -> list[str]:
    """One line per breached check: model@version, check, value, threshold (and the reference it came from)."""
    lines = []
    for model in found["models"]:
        for c in model["checks"]:
            if c["status"] != BREACH:
                continue
            side = "over the maximum" if c["rule"] == "max" else "under the minimum"
            origin = f" (reference {_number(c['reference'])} in run {found['reference']})" \
                if c["reference"] is not None else ""
            lines.append(f"breach: {model['model']}@{model['version']} {c['check']} {_number(c['value'])} "
                         f"{side} {_number(c['threshold'])}{origin}")
    return lines


def not_checked_lines(found: Mapping) -> list[str]:
    """One line per check that was not made, with why (without a reference run, one line for all it stops)."""
    lines = [f"not checked: {m['model']}@{m['version']} {c['check']}: {c['reason']}"
             for m in found["models"] for c in m["checks"]
             if c["status"] == NOT_CHECKED and (found["reference"] or c["reason"] != NO_REFERENCE)]
    if found["reference"] is None:
        lines.insert(0, f"not checked: PSI, AUC and conversion of every model: {NO_REFERENCE} (none started before "
                        f"run {found['run_id']} where it is; name one with --reference)")
    return lines


def summary_line(found: Mapping) -> str:
    against = f"against run {found['reference']}" if found["reference"] else "without a reference run"
    return (f"monitored {len(found['models'])} active model version(s) of run {found['run_id']} {against}: "
            f"{found['checks']} check(s), {found['breaches']} breach(es), {found['not_checked']} not checked")
