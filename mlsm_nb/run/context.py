"""A run's context: what every part of a run reads (notebooks, settings, run directory, executor,
merger) and the one place the scheduler reads and writes the run's manifest (a dict, saved as
``manifest.json``) while it runs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..core.model import model_key
from ..files import file_sha256
from ..notebook.contract import NotebookSpec
from ..redact import is_secret, redact_text
from ..store.manifest import BatchState, ExecutionStatus
from ..store.rundir import RunDirectory
from .execution import Executor
from .merge import Merger, Tally
from .settings import RunSettings

STORE_PROBLEMS = 20  # problems a sink reported, kept in the manifest
SLOWEST = 10  # a model's slowest records the manifest names (from its executions' own slowest)


def build_executor(specs: Sequence[NotebookSpec], run_dir: RunDirectory, settings: RunSettings,
                   status: str | None, workers: int) -> Executor:
    """The run's executor (plain data; nothing is written): notebooks, parameters (credentials apart), engine."""
    keyed = {model_key(s.name, s.version): s for s in specs}
    secrets = {k: v for k, v in settings.parameters.items() if is_secret(k, v)}
    return Executor(
        run_root=str(run_dir.root.resolve()), engine=settings.engine, timeout=settings.timeout,
        record_timeout=settings.record_timeout or None, id_field=settings.id_field,
        sources={key: str(spec.path.resolve()) for key, spec in keyed.items()},
        labels={key: str(spec.path) for key, spec in keyed.items()},
        needs={key: [model_key(m["name"], m["version"]) for m in spec.models] for key, spec in keyed.items()},
        parameters={k: v for k, v in settings.parameters.items() if k not in secrets}, secrets=secrets,
        status=status, bundle=str(Path(settings.bundle).resolve()) if settings.bundle else None,
        # Kept kernels per thread: its share of the notebooks, at least 4 (any thread may run any
        # notebook, so a smaller share keeps stopping kernels that are needed next).
        warm_kernels=max(-(-len(keyed) // workers) + 1, min(len(keyed), 4)) if settings.warm_kernels else 0,
        own_threads=not settings.scheduler)


class RunContext:
    """One run: its notebooks (`keys`, models before the summaries that need them), run directory,
    manifest, settings, executor and merger. `keep` says whether merges hand their documents back
    in memory (for the sinks)."""

    def __init__(self, specs: Sequence[NotebookSpec], run_dir: RunDirectory, manifest: dict,
                 settings: RunSettings, executor: Executor, *, keep: bool = False):
        self.keys = [model_key(s.name, s.version) for s in specs]
        self.run = run_dir
        self.manifest = manifest
        self.settings = settings
        self.executor = executor
        self.keep = keep
        self.merger = Merger(run_root=executor.run_root, run_id=manifest["run_id"], id_field=settings.id_field,
                             models={model_key(s.name, s.version): (s.name, s.version) for s in specs})

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    def label(self, key: str) -> str:
        return self.executor.labels[key]

    def save(self) -> None:
        """Write the manifest (atomically)."""
        self.run.write_manifest(self.manifest)

    # -- the input
    @property
    def input(self) -> dict:
        return self.manifest["input"]

    def record_input(self, summary: Mapping) -> None:
        """The records file is read to its end: its counts."""
        self.manifest["input"].update(summary)

    # -- executions
    def execution(self, key: str, batch: int) -> dict | None:
        return self.manifest["executions"].get(key, {}).get(str(batch))

    def record_execution(self, key: str, batch: int, entry: dict) -> None:
        self.manifest["executions"].setdefault(key, {})[str(batch)] = entry

    def executions(self) -> Iterator[tuple[str, int, dict]]:
        for key, batches in self.manifest["executions"].items():
            for batch, entry in batches.items():
                yield key, int(batch), entry

    def intact(self, key: str, batch: int) -> bool:
        """Whether execution (key, batch) succeeded and its output file is the one it wrote (resume keeps it)."""
        entry = self.execution(key, batch)
        output = self.run.output_path(key, batch)
        return bool(entry and entry["status"] == ExecutionStatus.OK and output.is_file()
                    and file_sha256(output) == entry.get("output_sha256"))

    # -- merges
    def merged(self, batch: int) -> bool:
        """Whether the batch was merged (its counts recorded, its results file written)."""
        return str(batch) in self.manifest.get("batch_stats", {}) and self.run.results_path(batch).is_file()

    def record_merge(self, batch: int, models: Mapping) -> None:
        self.manifest.setdefault("batch_stats", {})[str(batch)] = models

    def fail_execution(self, key: str, batch: int, error: str) -> None:
        """An execution that succeeded is failed after all (e.g. its output cannot be merged)."""
        self.manifest["executions"][key][str(batch)].update(status=ExecutionStatus.FAILED, error=redact_text(error))

    def record_merge_error(self, batch: int, error: str) -> None:
        self.manifest.setdefault("merge_errors", {})[str(batch)] = redact_text(error)

    # -- stores
    def record_stored(self, batch: int, stored: bool, problems: Sequence[str], errors: Sequence[str]) -> None:
        """A batch handed to the sinks: "stored" when every sink holds it, else "merged" (its results are
        in the run directory); the first problems the sinks reported, and the first sink error."""
        self.manifest.setdefault("batch_states", {})[str(batch)] = BatchState.STORED if stored else BatchState.MERGED
        if problems:
            kept = self.manifest.setdefault("store_problems", [])
            kept += [redact_text(p) for p in problems[:max(0, STORE_PROBLEMS - len(kept))]]
        self.record_sink_errors(errors)

    def record_sink_errors(self, errors: Sequence[str]) -> None:
        """The first sink that failed, and why (the run then fails; resume stores the rest)."""
        for error in errors:
            self.manifest.setdefault("store_error", redact_text(error))

    def count(self) -> None:
        """The run's failed executions and per-model counts, from its executions and batches."""
        batch_stats = self.manifest.get("batch_stats", {})
        failed = sum(1 for k in self.keys for e in self.manifest["executions"].get(k, {}).values()
                     if e["status"] != ExecutionStatus.OK)
        totals = {key: Tally() for key in self.keys}
        for _, per_model in sorted(batch_stats.items(), key=lambda item: int(item[0])):  # same sums in any order
            for key, counts in per_model.items():
                totals[key].merge(Tally(counts))
        self.manifest.update(failed_executions=failed, models={key: tally.as_dict() for key, tally in totals.items()},
                             slowest={key: self.slowest(key) for key in self.keys})

    def slowest(self, key: str) -> list[list]:
        """[[record id, seconds], ...]: model `key`'s slowest records over its executions, slowest first."""
        timed = [pair for entry in self.manifest["executions"].get(key, {}).values()
                 for pair in entry.get("slowest", ())]
        return sorted(timed, key=lambda pair: -pair[1])[:SLOWEST]


def worker_count(settings: RunSettings) -> int:
    return settings.workers or os.cpu_count() or 1
