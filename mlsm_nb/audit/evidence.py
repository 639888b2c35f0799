"""`mlsm-nb compare`: a champion and a challenger measured on the same labelled records, and the evidence kept.

Both models' scores are paired with outcomes as the report pairs them (`audit.outcomes.outcome_models`,
`audit.metrics`: one AUC, lift and calibration implementation) and only the records both scored with an
outcome count. Each figure (AUC, lift of each decile, calibration error) comes with its confidence interval,
and so does each difference (challenger minus champion), from a **paired bootstrap**: the shared records
are drawn with replacement `resamples` times with a fixed seed, both models measured on the same draw. Paired,
because the two models' errors on one record are correlated and the difference's spread is narrower than
either figure's; bootstrap rather than DeLong, because one method then covers lift and calibration as well as
AUC, and a fixed seed gives the same evidence for the same scores every time.

It passes (MLflow's `MetricThreshold` on AUC) when there are at least `min_records` shared labelled records
and the challenger's AUC improves on the champion's by at least `min_absolute` and by at least
`min_relative` of it, with the lower bound of the difference's interval above 0 (not chance). Lift and
calibration are shown, not gated. Every comparison is kept, passing or not: in the registry with MongoDB
(collection ``evidence``, `store.registry`), else in ``evidence.jsonl`` in the run directory.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np

from ..clock import utc_now
from ..core.model import model_key, split_model_key
from ..exceptions import MlsmError, SettingsError
from ..files import read_jsonl, write_jsonl
from ..store.rundir import RunDirectory
from .database import AuditDatabase
from .metrics import ModelOutcomes, auc, calibration, deciles
from .outcomes import outcome_models, run_outcomes

EVIDENCE_FILE = "evidence.jsonl"
MIN_RECORDS = 200  # shared labelled records below which a comparison says so and does not pass
RESAMPLES = 1000
SEED = 37  # fixed: the same scores give the same intervals
CONFIDENCE = 0.95


class CompareError(MlsmError):
    """A comparison that cannot be made (unknown model, nothing to compare); nothing is written."""


@dataclass(frozen=True)
class Thresholds:
    """What a challenger must show (defaults: any improvement of AUC, not chance, on 200 records or more)."""

    min_absolute: float = 0.0  # challenger AUC - champion AUC, at least
    min_relative: float = 0.0  # (challenger AUC - champion AUC) / champion AUC, at least
    confidence: float = CONFIDENCE  # of every interval; the AUC difference's lower bound must be above 0
    min_records: int = MIN_RECORDS
    resamples: int = RESAMPLES

    def check(self) -> None:
        """SettingsError for thresholds no comparison can meet, or that ask for fewer than 200 records."""
        problems = []
        if not 0 <= self.min_absolute < 1:
            problems.append(f"--min-improvement {self.min_absolute} must be at least 0 and below 1 (AUC lies in "
                            "[0, 1])")
        if self.min_relative < 0:
            problems.append(f"--min-relative-improvement {self.min_relative} must be at least 0")
        if not 0.5 <= self.confidence < 1:
            problems.append(f"--confidence {self.confidence} must be at least 0.5 and below 1")
        if self.min_records < MIN_RECORDS:
            problems.append(f"--min-records {self.min_records}: a comparison needs at least {MIN_RECORDS} shared "
                            "labelled records")
        if self.resamples < 100:
            problems.append(f"--resamples {self.resamples} must be at least 100")
        if problems:
            raise SettingsError("; ".join(problems))

    def reachable(self, champion_auc: float) -> str | None:
        """Why no challenger can pass against a champion of this AUC (None when one can)."""
        needed = max(champion_auc + self.min_absolute, champion_auc * (1 + self.min_relative))
        if needed >= 1:
            return (f"the thresholds cannot be met: the champion's AUC is {champion_auc:.4f}, so the challenger "
                    f"would need an AUC of {needed:.4f} or more, and no AUC is above 1 (nor can an interval lie above "
                    "a perfect one)")
        return None


def calibration_error(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Expected calibration error: |mean score - observed rate| per bin of `metrics.calibration`, weighted by
    its records; None when the scores are not probabilities."""
    bins = calibration(scores, labels)
    if bins is None:
        return None
    return sum(b["records"] * abs(b["mean_score"] - b["observed_rate"]) for b in bins) / len(scores)


def _top_lift(scores, labels) -> float | None:
    rows = deciles(scores, labels)
    return rows[0]["lift"] if rows else None


FIGURES: dict[str, Callable] = {"auc": auc, "top_decile_lift": _top_lift, "calibration_error": calibration_error}


def _interval(values: list[float], confidence: float) -> list[float] | None:
    if not values:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def _paired_bootstrap(a: np.ndarray, b: np.ndarray, y: np.ndarray, thresholds: Thresholds) -> dict:
    """Per figure: the intervals of the champion's (`a`), the challenger's (`b`) and their difference, from
    `resamples` draws of the records with replacement (seed `SEED`), both measured on each draw."""
    rng = np.random.default_rng(SEED)
    drawn: dict[str, dict[str, list]] = {name: {"champion": [], "challenger": [], "difference": []}
                                         for name in FIGURES}
    for _ in range(thresholds.resamples):
        pick = rng.integers(0, len(y), len(y))
        for name, figure in FIGURES.items():
            first, second = figure(a[pick], y[pick]), figure(b[pick], y[pick])
            for side, value in (("champion", first), ("challenger", second)):
                if value is not None:
                    drawn[name][side].append(value)
            if first is not None and second is not None:
                drawn[name]["difference"].append(second - first)
    return {name: {f"{side}_ci": _interval(values, thresholds.confidence) for side, values in sides.items()}
            for name, sides in drawn.items()}


def _figures(a: np.ndarray, b: np.ndarray, y: np.ndarray, thresholds: Thresholds) -> dict:
    intervals = _paired_bootstrap(a, b, y, thresholds)
    found = {}
    for name, figure in FIGURES.items():
        first, second = figure(a, y), figure(b, y)
        difference = second - first if first is not None and second is not None else None
        found[name] = {"champion": first, "challenger": second, "difference": difference, **intervals[name]}
    found["deciles"] = []  # ties may leave a model fewer than ten groups (`metrics.deciles`): its lift is None
    for number, (x, z) in enumerate(zip_longest(deciles(a, y), deciles(b, y), fillvalue={}), 1):
        first, second = x.get("lift"), z.get("lift")
        found["deciles"].append({"decile": number, "champion_lift": first, "challenger_lift": second,
                                 "difference": second - first if None not in (first, second) else None})
    return found


def _checks(figures: dict, records: int, thresholds: Thresholds) -> list[dict]:
    if records < thresholds.min_records:
        return [{"check": "records", "passed": False,
                 "says": f"{records} shared labelled record(s); a comparison needs at least {thresholds.min_records}"}]
    auc_ = figures["auc"]
    checks = [{"check": "records", "passed": True, "says": f"{records} shared labelled records "
                                                           f"(at least {thresholds.min_records})"}]
    if auc_["difference"] is None:
        return checks + [{"check": "auc", "passed": False,
                          "says": "AUC undefined: the shared records hold one outcome only (all 0 or all 1)"}]
    difference, relative = auc_["difference"], auc_["difference"] / auc_["champion"]
    low = (auc_["difference_ci"] or [None])[0]
    checks.append({"check": "absolute improvement", "passed": difference >= thresholds.min_absolute,
                   "says": f"AUC {difference:+.4f} (at least {thresholds.min_absolute:+.4f})"})
    checks.append({"check": "relative improvement", "passed": relative >= thresholds.min_relative,
                   "says": f"AUC {relative:+.2%} of the champion's (at least {thresholds.min_relative:+.2%})"})
    checks.append({"check": "not chance", "passed": low is not None and low > 0,
                   "says": f"the {thresholds.confidence:.0%} interval of the AUC difference starts at "
                           f"{low:+.4f} (above 0)" if low is not None else "no interval"})
    return checks


@dataclass
class Source:
    """Where the scores and outcomes are read and the evidence written: a run directory or MongoDB."""

    run: Path | None = None
    database: AuditDatabase | None = None

    def describe(self) -> str:
        if self.database is not None:
            return f"MongoDB ({self.database.store.db.name})"
        return f"run {self.run.name}"

    def code_hashes(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """Each model's sha256 without status: the run manifest's, or the registry's with MongoDB."""
        if self.database is not None:
            entries = self.database.store.registry.entries(keys)
            return {k: (entries.get(k) or {}).get("sha256_without_status") for k in keys}
        notebooks = {(n.name, n.version): n for n in RunDirectory(self.run).read_manifest().notebooks}
        return {k: getattr(notebooks.get(k), "sha256_without_status", None) for k in keys}

    def labels(self) -> list[str]:
        """The outcome labels there, sorted."""
        if self.database is not None:
            return sorted(self.database.outcomes.distinct("label"))
        return sorted({o.get("label") for o in run_outcomes(self.run)})

    def write(self, evidence: dict) -> str:
        """Keep `evidence`; returns where."""
        if self.database is not None:
            self.database.store.registry.record_evidence(evidence)
            return f"the model registry of MongoDB ({self.database.store.db.name}.evidence)"
        target = self.run / EVIDENCE_FILE
        write_jsonl(target, [*run_evidence(self.run), evidence])  # atomic: the old file or the whole new one
        return str(target)


def _models(source: Source, champion: str, challenger: str, label: str | None) -> tuple[ModelOutcomes, ...]:
    if champion == challenger:
        raise SettingsError(f"the champion and the challenger are both {champion}: compare two versions")
    for key in (champion, challenger):
        name, version = split_model_key(key)
        if not name or not version:
            raise SettingsError(f"{key!r} must name a model version as NAME@VERSION (e.g. lead_rules@1.0.0)")
    if label is None:
        labels = source.labels()
        if len(labels) > 1:
            raise SettingsError(f"the outcomes in {source.describe()} give several labels ({', '.join(labels)}): "
                                "say which to compare on with --label")
    models = outcome_models(source.run, source.database, label)
    unknown = [key for key in (champion, challenger) if key not in models]
    if unknown:
        known = ", ".join(models) or "none (attach outcomes first: mlsm-nb outcomes FILE --label COLUMN ...)"
        raise CompareError(f"{' and '.join(unknown)}: no scores with outcomes in {source.describe()}"
                           f"{f' for label {label}' if label else ''}; models with outcomes there: {known}")
    return models[champion], models[challenger]


def compare_models(champion: str, challenger: str, *, run: str | Path | None = None,
                   database: AuditDatabase | None = None, thresholds: Thresholds = Thresholds(),
                   label: str | None = None, by: str | None = None) -> dict:
    """Compare `challenger` (name@version) with `champion` on the records both scored with an outcome, in a run
    directory or in MongoDB; write the evidence there and return it (``passed``, ``checks``, figures,
    ``written_to``).

    Raises SettingsError for the same model twice, a key that is not NAME@VERSION, thresholds out of range
    or that no challenger could meet; CompareError for a model without scores with outcomes, or without a
    recorded sha256 without status.
    """
    if (run is None) == (database is None):
        raise SettingsError("say where the scores are: --run RUN_DIR or --mongo-uri URI (one of them)")
    thresholds.check()
    source = Source(Path(run) if run is not None else None, database)
    first, second = _models(source, champion, challenger, label)
    hashes = source.code_hashes([(first.name, first.version), (second.name, second.version)])
    missing = [model_key(*k) for k, v in hashes.items() if not v]
    if missing:
        raise CompareError(f"{', '.join(missing)}: {source.describe()} records no sha256 without status (it was "
                           "registered or run by an older mlsm-nb); run or extract it again, then compare")
    ours, theirs, labels = first.paired_with(second)
    a, b, y = np.array(ours, float), np.array(theirs, float), np.array(labels, int)
    figures = _figures(a, b, y, thresholds) if len(y) >= thresholds.min_records else {}
    if figures and figures["auc"]["champion"] is not None:
        why = thresholds.reachable(figures["auc"]["champion"])
        if why:
            raise SettingsError(why)
    checks = _checks(figures, len(y), thresholds)
    evidence = {
        "id": f"evidence-{utc_now()[:19].replace('-', '').replace(':', '')}-{uuid.uuid4().hex[:8]}",
        "at": utc_now(), "by": by or f"{getpass.getuser()}@{socket.gethostname()}", "source": source.describe(),
        "label": label,
        "champion": {"name": first.name, "version": first.version,
                     "sha256_without_status": hashes[first.name, first.version]},
        "challenger": {"name": second.name, "version": second.version,
                       "sha256_without_status": hashes[second.name, second.version]},
        "records": int(len(y)), "positives": int(y.sum()),
        "method": {"intervals": "paired bootstrap (percentile)", "resamples": thresholds.resamples, "seed": SEED,
                   "confidence": thresholds.confidence},
        "thresholds": asdict(thresholds), **figures, "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }
    evidence["written_to"] = source.write(evidence)
    return evidence


def _ci(values: list[float] | None, digits: int) -> str:
    return f"[{values[0]:.{digits}f}, {values[1]:.{digits}f}]" if values else "[n/a]"


def _line(label: str, row: Mapping, digits: int = 4) -> str:
    if row["champion"] is None and row["challenger"] is None:
        return f"  {label:18} not available (scores not in [0, 1])"
    cells = ["n/a" if row[side] is None else f"{row[side]:.{digits}f} {_ci(row[f'{side}_ci'], digits)}"
             for side in ("champion", "challenger")]
    difference = "n/a" if row["difference"] is None else f"{row['difference']:+.{digits}f}"
    return f"  {label:18} {cells[0]:25} {cells[1]:25} {difference} {_ci(row['difference_ci'], digits)}"


def format_evidence(evidence: Mapping) -> str:
    """The comparison as lines for a terminal: figures with intervals, each check, the verdict, where kept."""
    champion = model_key(evidence["champion"]["name"], evidence["champion"]["version"])
    challenger = model_key(evidence["challenger"]["name"], evidence["challenger"]["version"])
    method = evidence["method"]
    lines = [f"{challenger} against {champion} on {evidence['records']} shared labelled records "
             f"({evidence['positives']} positive) in {evidence['source']}"]
    if "auc" in evidence:
        lines.append(f"  {method['confidence']:.0%} intervals: {method['intervals']}, {method['resamples']} resamples, "
                     f"seed {method['seed']}")
        lines.append(f"  {'':18} {'champion':25} {'challenger':25} difference (challenger - champion)")
        lines.append(_line("AUC", evidence["auc"]))
        lines.append(_line("top-decile lift", evidence["top_decile_lift"], 2))
        lines.append(_line("calibration error", evidence["calibration_error"]))
        lift = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append("  lift by decile     " + "  ".join(
            f"{d['decile']}: {lift(d['champion_lift'])}/{lift(d['challenger_lift'])}" for d in evidence["deciles"]))
    for check in evidence["checks"]:
        lines.append(f"  {'ok  ' if check['passed'] else 'FAIL'} {check['check']}: {check['says']}")
    lines.append(f"{'passed' if evidence['passed'] else 'did not pass'}: evidence {evidence['id']} written to "
                 f"{evidence['written_to']}")
    return "\n".join(lines)


def run_evidence(run: str | Path) -> list[dict]:
    """The comparisons kept in a run directory (empty when none)."""
    target = Path(run) / EVIDENCE_FILE
    return list(read_jsonl(target)) if target.is_file() else []
