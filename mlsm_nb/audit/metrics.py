"""Models measured against observed outcomes, and score drift across runs (no HTML here).

For each model and version, over the scored records that have an outcome:
AUC (the probability that a converted record scores above one that did not,
ties counting half), conversion rate and lift by score decile (decile 1 holds
the highest scores; records with the same score always share a decile),
calibration (mean score against observed rate in ten
equal-width bins, when the scores are probabilities), and the champion against
each challenger on the records both scored. Drift: the score distribution of
each model in the last N runs and its PSI against the oldest of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..core.model import model_key
from ..core.output import is_score
from ..core.stats import PSI_THRESHOLD, psi, score_stats

DECILES = 10
CALIBRATION_BINS = 10


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the average of their ranks."""
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def auc(scores: Iterable[float], labels: Iterable[int]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula; None with one class only."""
    scores, labels = np.asarray(list(scores), float), np.asarray(list(labels), int)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    ranks = _average_ranks(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _tie_safe_cuts(ordered: np.ndarray, groups: int) -> list[int]:
    """Where to cut scores sorted highest first into `groups` parts: the cuts of equal parts (the first
    ones a record larger, as numpy's array_split makes them), each moved to the nearest place where the
    score changes (the earlier one when two are as near), so that no score value spans two parts. Cuts
    that land on the same place merge their parts."""
    size, extra = divmod(len(ordered), groups)
    targets = np.cumsum([size + (i < extra) for i in range(groups)])[:-1]
    changes = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1  # first position of each new score value
    cuts: list[int] = []
    for target in targets:
        if not len(changes):
            break
        at = int(np.searchsorted(changes, target))
        near = [changes[i] for i in (at - 1, at) if 0 <= i < len(changes)]
        cut = int(min(near, key=lambda c: (abs(c - target), c)))
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    return cuts


def deciles(scores: Iterable[float], labels: Iterable[int]) -> list[dict]:
    """Records ordered by score, highest first, cut into ten groups as equal as they can be without
    splitting a score value: records with the same score are always in one group, so a group holds more or
    fewer than a tenth of the records where scores tie, and there are fewer than ten groups when a few
    values hold most records (one group per value at least). Per group: the records, conversions,
    conversion rate, lift over the overall rate, score range. Without ties these are the equal deciles."""
    scores, labels = np.asarray(list(scores), float), np.asarray(list(labels), int)
    if not len(scores):
        return []
    order = np.argsort(-scores, kind="stable")
    overall = labels.mean()
    rows = []
    for number, part in enumerate(np.split(order, _tie_safe_cuts(scores[order], min(DECILES, len(order)))), 1):
        rate = float(labels[part].mean())
        rows.append({"decile": number, "records": int(len(part)), "converted": int(labels[part].sum()),
                     "rate": rate, "lift": rate / overall if overall else None,
                     "score_min": float(scores[part].min()), "score_max": float(scores[part].max())})
    return rows


def calibration(scores: Iterable[float], labels: Iterable[int], bins: int = CALIBRATION_BINS) -> list[dict] | None:
    """Mean score and observed rate per equal-width bin of [0, 1] (empty bins left out);
    None when a score lies outside [0, 1] (not a probability)."""
    scores, labels = np.asarray(list(scores), float), np.asarray(list(labels), int)
    if not len(scores) or scores.min() < 0 or scores.max() > 1:
        return None
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], scores)  # bin i holds (edge i, edge i+1]; 0 goes to the first
    rows = []
    for i in range(bins):
        inside = which == i
        if inside.any():
            rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "records": int(inside.sum()),
                         "mean_score": float(scores[inside].mean()), "observed_rate": float(labels[inside].mean())})
    return rows


@dataclass
class ModelOutcomes:
    """One model version's scores paired with outcomes, by record id."""

    name: str
    version: str
    kind: str = "model"
    status: str | None = None
    pairs: dict = field(default_factory=dict)  # (type, id) -> (score, label)

    @property
    def key(self) -> str:
        return model_key(self.name, self.version)

    def paired_with(self, other: ModelOutcomes) -> tuple[list, list, list]:
        """On the records both scored with an outcome (in this one's order): its scores, `other`'s, the labels."""
        shared = [r for r in self.pairs if r in other.pairs]
        return ([self.pairs[r][0] for r in shared], [other.pairs[r][0] for r in shared],
                [self.pairs[r][1] for r in shared])

    def metrics(self) -> dict:
        scores = [s for s, _ in self.pairs.values()]
        labels = [y for _, y in self.pairs.values()]
        return {"records": len(labels), "converted": int(sum(labels)),
                "rate": (sum(labels) / len(labels)) if labels else None,
                "auc": auc(scores, labels), "deciles": deciles(scores, labels),
                "calibration": calibration(scores, labels)}


def join_outcomes(documents: Iterable[Mapping], outcomes: Iterable[Mapping], id_field: str,
                  kinds: Mapping[str, str] | None = None, label: str | None = None) -> dict[str, ModelOutcomes]:
    """Pair each model version's numeric `score` with the record's outcome.

    `documents` come newest first when an id was scored more than once (the
    first score of each (id, model, version) counts). `kinds` maps
    `name@version` to "model" or "summary". `label` picks one outcome label.
    """
    observed = {(type(o[id_field]), o[id_field]): o["value"] for o in outcomes if not label or o["label"] == label}
    models: dict[str, ModelOutcomes] = {}
    for document in documents:
        record = (type(document[id_field]), document[id_field])
        if record not in observed:
            continue
        for name, versions in document.get("results", {}).items():
            for version, entry in versions.items():
                score = entry.get("score")
                if not is_score(score):
                    continue
                key = model_key(name, version)
                model = models.setdefault(key, ModelOutcomes(name, version, (kinds or {}).get(key, "model"),
                                                             entry.get("_status")))
                model.pairs.setdefault(record, (float(score), observed[record]))
    return dict(sorted(models.items()))


def pick_champion(models: Mapping[str, ModelOutcomes]) -> str | None:
    """The champion: the summary model when there is one (it makes the decision), else the first active model."""
    for kind_or_status in ("summary", "active"):
        for key, model in models.items():
            if kind_or_status in (model.kind, model.status):
                return key
    return next(iter(models), None)


def champion_vs_challengers(models: Mapping[str, ModelOutcomes], champion: str | None = None) -> list[dict]:
    """Per challenger, on the records both scored with an outcome: each one's AUC and top-decile rate."""
    champion = champion or pick_champion(models)
    if champion not in models:
        return []
    best = models[champion]
    rows = []
    for key, challenger in models.items():
        if key == champion:
            continue
        ours, theirs, labels = best.paired_with(challenger)
        a, b = auc(ours, labels), auc(theirs, labels)
        top_a, top_b = deciles(ours, labels)[:1], deciles(theirs, labels)[:1]
        rows.append({"champion": champion, "challenger": key, "records": len(labels),
                     "champion_auc": a, "challenger_auc": b,
                     "auc_difference": (b - a) if a is not None and b is not None else None,
                     "champion_top_rate": top_a[0]["rate"] if top_a else None,
                     "challenger_top_rate": top_b[0]["rate"] if top_b else None})
    return rows


def drift(runs: list[dict], documents: Iterable[Mapping], threshold: float = PSI_THRESHOLD) -> list[dict]:
    """Per model version: score statistics and PSI (against the oldest run) in each of `runs` (oldest first).

    `documents` carry `run_id` and `results`. A model is flagged when its PSI
    in the newest run it appears in is over `threshold`.
    """
    order = [r["_id"] if "_id" in r else r["run_id"] for r in runs]
    scores: dict[str, dict[str, list[float]]] = {}
    for document in documents:
        for name, versions in document.get("results", {}).items():
            for version, entry in versions.items():
                if is_score(entry.get("score")):
                    scores.setdefault(model_key(name, version), {}).setdefault(document["run_id"], []).append(
                        float(entry["score"]))
    rows = []
    for key, per_run in sorted(scores.items()):
        present = [r for r in order if r in per_run]
        baseline = per_run[present[0]]
        series = [{"run_id": r, "stats": score_stats(per_run[r]), "psi": psi(baseline, per_run[r])} for r in present]
        latest = series[-1]["psi"] if len(series) > 1 else None
        rows.append({"model": key, "baseline": present[0], "runs": series, "latest_psi": latest,
                     "drift": latest is not None and latest > threshold})
    return rows
