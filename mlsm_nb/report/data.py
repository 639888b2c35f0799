"""What a reviewer report shows, computed from a run directory (no HTML here).

`build_run_report(run_dir)` reads the manifest, the result documents and the
rejected records; `compare_runs(base, other)` sets the same models of two runs
side by side with a population stability index (PSI) per score. Counts come
from the results themselves, so a run whose every record failed never shows as
scored, and manifests written by older versions (without `verdict` or
`error_rate`) read the same.
"""

from __future__ import annotations

import heapq
import socket
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..core.model import model_key
from ..core.output import REASONS_KEY, is_score, reasons_problem, reasons_text
from ..core.stats import PSI_THRESHOLD, psi, score_stats
from ..exceptions import describe_error
from ..files import read_jsonl
from ..run.settings import resume_command
from ..store.manifest import Manifest, RunStatus
from ..store.rundir import RunDirectory

ERROR_EXAMPLES = 10
REASON_EXAMPLES = 5  # highest-scored records shown with their reasons on a model page
SAMPLE_SIZE = 5  # records shown on an executed notebook's page
STOPPED = "stopped"  # the report's word for a run whose manifest says running but no process runs


@dataclass
class ModelReport:
    """One model's view of a run: provenance, scores, errors, categorical outputs."""

    key: str
    name: str
    version: str
    status: str
    kind: str
    sha256: str = ""
    git_commit: str | None = None
    source: str = ""
    records: int = 0
    scores: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    error_examples: list[dict] = field(default_factory=list)
    categories: dict[str, Counter] = field(default_factory=dict)
    with_reasons: int = 0  # records whose entry has `_reasons`
    reasons: dict[str, list] = field(default_factory=dict)  # field -> [records, sum, sum of |contribution|]
    reason_examples: list = field(default_factory=list)  # heap of (score, order, id, reasons): the top scores

    def _add_reasons(self, record_id, score, reasons) -> None:
        """Count the fields given as reasons; keep the highest scores' reasons (why they scored high)."""
        self.with_reasons += 1
        for item in reasons:
            tally = self.reasons.setdefault(item["field"], [0, 0.0, 0.0])
            tally[0] += 1
            tally[1] += item["contribution"]
            tally[2] += abs(item["contribution"])
        if is_score(score):
            example = (score, -self.records, record_id, reasons)  # of equal scores, the first record stays
            if len(self.reason_examples) < REASON_EXAMPLES:
                heapq.heappush(self.reason_examples, example)
            elif example[:2] > self.reason_examples[0][:2]:
                heapq.heapreplace(self.reason_examples, example)

    def reason_rows(self) -> list[dict]:
        """Per field given as a reason, most often first: records, share of the records with reasons, mean
        contribution and mean |contribution| (where it was a reason)."""
        rows = [{"field": name, "records": n, "share": n / self.with_reasons, "mean": total / n,
                 "mean_abs": size / n} for name, (n, total, size) in self.reasons.items()]
        return sorted(rows, key=lambda row: (-row["records"], -row["mean_abs"], row["field"]))

    def top_reasons(self) -> list[dict]:
        """The highest-scored records with their reasons, highest first."""
        return [{"id": record_id, "score": score, "reasons": reasons_text(reasons)}
                for score, _, record_id, reasons in sorted(self.reason_examples, key=lambda e: e[:2], reverse=True)]

    def add(self, record_id, entry: dict) -> None:
        self.records += 1
        kind = entry.get("_error_kind")
        if kind:
            self.errors[kind] += 1
            if len(self.error_examples) < ERROR_EXAMPLES:
                self.error_examples.append({"id": record_id, "kind": kind, "message": describe_error(entry)})
            return
        score = entry.get("score")
        if is_score(score):
            self.scores.append(float(score))
        for name, value in entry.items():
            if isinstance(value, str) and not name.startswith("_"):
                self.categories.setdefault(name, Counter())[value] += 1
        reasons = entry.get(REASONS_KEY)
        if reasons is not None and reasons_problem(reasons) is None:
            self._add_reasons(record_id, score, reasons)

    def stats(self) -> dict:
        """count, mean, std, min, quantiles, max of the numeric `score` (empty when none)."""
        return score_stats(self.scores)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.error_count / self.records if self.records else 0.0

    def frequencies(self, name: str, top: int = 20) -> list[tuple[str, int, float]]:
        """(value, records, share) of a text output over all records, with an "error" row for
        the records that have no value because the model failed on them."""
        rows = [(value, n) for value, n in self.categories.get(name, Counter()).most_common(top)]
        rows.append(("error", self.error_count))
        return [(value, n, n / self.records if self.records else 0.0) for value, n in rows]


@dataclass
class RunReport:
    """Everything the run page and the model pages show."""

    run_dir: Path
    manifest: Manifest
    models: dict[str, ModelReport]
    executions: list[dict]
    rejected: list[dict]
    rejected_count: int
    records: int = 0  # result documents
    records_with_errors: int = 0  # documents where at least one model failed

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def input_read(self) -> bool:
        """Whether the run read its input to the end (an interrupted run may not have)."""
        return self.manifest.input is not None and self.manifest.input.batches is not None

    @property
    def batches(self) -> int:
        """The input's batches; for a run that did not read its input to the end, the batches it got to."""
        if self.input_read:
            return self.manifest.input.batches
        return len(set(self.manifest.batch_states) | {e["batch"] for e in self.executions})

    @property
    def records_scored(self) -> int:
        """Records every model scored without an error."""
        return self.records - self.records_with_errors

    @property
    def status(self) -> RunStatus | str:
        """The run's status; a run that succeeded while models failed on some records
        "succeeded with errors" (older manifests only say "succeeded"); one whose manifest says "running"
        while no process runs it (killed, or its machine went down) "stopped"."""
        status = self.manifest.status
        if status is RunStatus.SUCCEEDED and self.records_with_errors:
            return RunStatus.SUCCEEDED_WITH_ERRORS
        if status is RunStatus.RUNNING and not self._running:
            return STOPPED
        return status

    @cached_property
    def _running(self) -> bool:
        host = self.manifest.started_by.get("host")
        if host and host != socket.gethostname():
            return True  # a process on another machine: this one cannot tell
        return RunDirectory(self.run_dir).running_pid() is not None

    @property
    def resume_command(self) -> str | None:
        """The command that finishes an interrupted or stopped run (None for any other)."""
        if self.status not in (RunStatus.INTERRUPTED, STOPPED):
            return None
        m = self.manifest
        return resume_command([n.source for n in m.notebooks], m.input.path if m.input else "",
                              str(self.run_dir.parent), self.run_id, m.settings)

    @property
    def status_class(self) -> str:
        return {RunStatus.SUCCEEDED: "ok", RunStatus.SUCCEEDED_WITH_ERRORS: "warn",
                RunStatus.RUNNING: "warn"}.get(self.status, "failed")

    @property
    def merge_errors(self) -> list[str]:
        """Why batches could not be merged, in batch order."""
        return self.manifest.merge_error_lines()

    def verdict(self) -> dict:
        """The run's error-rate verdict: threshold and the models over it (none when the manifest has
        no verdict). A verdict written before verdicts named the models falls back to per-model `error_rate`."""
        verdict = self.manifest.verdict
        if verdict is None:
            return {"threshold": None, "over": [], "message": "", "rejected_over": False, "no_records": False,
                    "input_cut_short": None}
        threshold, over = verdict.max_error_rate, verdict.models_over
        if over is None and threshold is not None:
            over = [key for key, m in self.models.items() if m.records and m.error_rate > threshold]
        return {"threshold": threshold, "over": list(over or []), "message": verdict.message,
                "rejected_over": verdict.rejected_over, "no_records": verdict.no_records,
                "input_cut_short": verdict.input_cut_short}


def _executions(manifest: Manifest) -> list[dict]:
    rows = [{"model": key, "batch": batch, **entry.to_dict()}
            for key, batches in manifest.executions.items() for batch, entry in batches.items()]
    return sorted(rows, key=lambda r: (r["batch"], r["model"]))


def build_run_report(run_dir: str | Path) -> RunReport:
    """Read a run directory into a RunReport."""
    run = RunDirectory(run_dir)
    manifest = run.read_manifest()
    id_field = manifest.id_field
    models = {}
    for entry in manifest.notebooks:
        key = model_key(entry.name, entry.version)
        models[key] = ModelReport(key, entry.name, entry.version, entry.status or "", entry.kind or "model",
                                  entry.sha256 or "", entry.git_commit, entry.source or "")
    records = with_errors = 0
    for document in run.results():
        records += 1
        failed = False
        for name, versions in document.get("results", {}).items():
            for version, result in versions.items():
                failed = failed or bool(result.get("_error_kind") or result.get("_error"))
                report = models.get(model_key(name, version))
                if report is not None:
                    report.add(document.get(id_field), result)
        with_errors += failed
    rejected = list(read_jsonl(run.rejected_path)) if run.rejected_path.is_file() else []
    return RunReport(Path(run_dir), manifest, models, _executions(manifest), rejected[:50], len(rejected),
                     records, with_errors)


def batch_sample(run_dir: str | Path, name: str, version: str, batch: int, size: int = SAMPLE_SIZE) -> list[dict]:
    """The first records of a batch with their ids and one model's result (`_reasons` as one line), for its
    executed notebook's page."""
    run = RunDirectory(run_dir)
    path = run.results_path(batch)
    if not path.is_file():
        return []
    id_field = run.read_manifest().id_field
    rows = []
    for document in read_jsonl(path):
        row = {"id": document.get(id_field), **document.get("results", {}).get(name, {}).get(version, {})}
        if REASONS_KEY in row and reasons_problem(row[REASONS_KEY]) is None:
            row[REASONS_KEY] = reasons_text(row[REASONS_KEY])  # one line, as trace prints them
        rows.append(row)
        if len(rows) == size:
            break
    return rows


def compare_runs(base: RunReport, other: RunReport, threshold: float = PSI_THRESHOLD) -> list[dict]:
    """One row per model present in either run: counts, mean and quantiles of each, PSI, drift flag."""
    rows = []
    for key in sorted(set(base.models) | set(other.models)):
        a, b = base.models.get(key), other.models.get(key)
        value = psi(a.scores, b.scores) if a and b else None
        rows.append({"model": key, "base": a.stats() if a else None, "other": b.stats() if b else None,
                     "base_records": a.records if a else 0, "other_records": b.records if b else 0,
                     "base_errors": sum(a.errors.values()) if a else 0,
                     "other_errors": sum(b.errors.values()) if b else 0,
                     "psi": value, "drift": value is not None and value > threshold})
    return rows
