"""The run manifest (``manifest.json``): its statuses, its parts as dataclasses, read and written here only.

On disk it is one JSON object, the same shape since the first release (so every kept run reads)::

    run_id, status (RunStatus), started_at (to the microsecond), ended_at, resumed_at,
    started_by {user, host, job_name, ...},
    the run's recorded settings, one key each (engine, batch_size, id_field, parameters, ...),
    notebooks [NotebookEntry], input (Input),
    executions {"name@version": {"<batch>": Execution}} (each with its slowest records),
    versions {package: version}, sinks [name],
    batch_stats {"<batch>": {"name@version": counts}}, batch_states {"<batch>": BatchState},
    merge_errors {"<batch>": line}, store_error, store_problems [line], error,
    failed_executions, models {"name@version": counts}, slowest {"name@version": [[record id, seconds]]},
    verdict (Verdict),
    cells_counted_from (how the run's messages number notebook cells: 1, as JupyterLab; a manifest
    written before mlsm-nb counted so has none, and its messages give the cell's index, from 0)

Keys this module does not know are kept as they are (a manifest written by a newer version reads and
writes back whole). A field at its default is left out when written, except the few every manifest
has (`Manifest.ALWAYS`). Older manifests read the same: a verdict written before run verdicts
(`threshold`, `over`, `reason`) reads as a `Verdict`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from ..exceptions import MlsmError
from ..files import write_json


class RunStatus(StrEnum):
    """Where a run is: running, or how it ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_ERRORS = "succeeded with errors"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def succeeded(self) -> bool:
        """True for a run that succeeded, with or without errors within the threshold."""
        return self in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED_WITH_ERRORS)


class ExecutionStatus(StrEnum):
    """How one (notebook, batch) execution ended."""

    OK = "ok"
    FAILED = "failed"


class BatchState(StrEnum):
    """A batch whose results are merged into the run directory, and stored by every sink too."""

    MERGED = "merged"
    STORED = "stored"


def _plain(value: Any) -> Any:
    """`value` as JSON-ready data: enums as their text, dataclasses of this module as dicts."""
    if isinstance(value, _Part):
        return value.to_dict()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Part:
    """A manifest part: known keys as fields, other keys kept in `extra`, written back in place."""

    ALWAYS: ClassVar[tuple[str, ...]] = ()  # fields written even at their default
    EXTRA: ClassVar[str] = "extra"  # the field that keeps the keys this module does not know

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        return value

    @classmethod
    def from_dict(cls, data: Mapping) -> Any:
        """Read a part from its JSON form; MlsmError for a value this module cannot read."""
        known = {f.name for f in dataclasses.fields(cls)} - {cls.EXTRA}
        try:
            given = {k: cls._convert(k, v) for k, v in data.items() if k in known}
            return cls(**given, **{cls.EXTRA: {k: v for k, v in data.items() if k not in known}})
        except (TypeError, ValueError, AttributeError) as exc:
            raise MlsmError(f"{cls.__name__}: {exc}") from None

    def to_dict(self) -> dict:
        """The JSON form: fields in order, the unknown keys where the extras sit, defaults left out."""
        out: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == self.EXTRA:
                out.update(_plain(value))
            elif f.name in self.ALWAYS or value != _default(f):
                out[f.name] = _plain(value)
        return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _batches(convert=lambda v: v):
    """A converter of a ``{"<batch>": value}`` mapping into ``{batch: value}``."""
    return lambda value: {int(batch): convert(v) for batch, v in value.items()}


@dataclass
class NotebookEntry(_Part):
    """One notebook of the run: what ran, from where, as which status."""

    name: str
    version: str
    status: str | None = None
    kind: str | None = None  # "model" or "summary"
    sha256: str | None = None
    sha256_without_status: str | None = None  # what evidence is keyed by (None in runs from before it was kept)
    source: str | None = None
    git_commit: str | None = None
    cells: list | None = None  # each production cell's {"index", "tag", "sha256"} (notebook.changes.parts)
    artifact_sha256: dict | None = None  # each artifact's sha256; both None in runs from before they were kept
    extra: dict = field(default_factory=dict)
    ALWAYS = ("name", "version")


@dataclass
class Input(_Part):
    """The records file: where, its sha256, and (once read to the end) its counts."""

    path: str = ""
    sha256: str | None = None
    records: int | None = None
    rejected: int | None = None
    batches: int | None = None
    complete: bool = False
    cut_short: str | None = None
    extra: dict = field(default_factory=dict)
    ALWAYS = ("path", "sha256")


@dataclass
class Execution(_Part):
    """One (notebook, batch) execution: how it ended, where, how long, how many records and errors."""

    status: ExecutionStatus
    started_at: str | None = None
    worker: str | None = None
    seconds: float | None = None
    records: int | None = None
    errors: int | None = None
    error: str | None = None
    output_sha256: str | None = None
    executed: str | None = None
    kernel_log: str | None = None
    kernel_runs: int | None = None
    slowest: list | None = None  # [[record id, seconds], ...]: the batch's slowest records, slowest first
    stuck: list | None = None  # [[record id, seconds], ...]: records stuck where no interrupt reached them
    extra: dict = field(default_factory=dict)
    ALWAYS = ("status", "started_at", "worker", "seconds", "records", "errors")

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        return ExecutionStatus(value) if name == "status" else value


_OLD_VERDICT = {"threshold": "max_error_rate", "over": "models_over", "models": "models_over",
                "failed_models": "models_over", "reason": "message"}


@dataclass
class Verdict(_Part):
    """Why a finished run succeeded or failed (see `run.verdict.judge`).

    `models_over` is None only in a manifest written before verdicts named the models."""

    max_error_rate: float | None = None
    models_over: list[str] | None = None
    models_with_errors: list[str] = field(default_factory=list)
    rejected_rate: float = 0.0
    rejected_over: bool = False
    no_records: bool = False
    failed_executions: int = 0
    failed_merges: int = 0
    input_cut_short: str | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)
    ALWAYS = ("max_error_rate", "models_over", "models_with_errors", "rejected_rate", "rejected_over", "no_records",
              "failed_executions", "failed_merges", "input_cut_short")

    @classmethod
    def from_dict(cls, data: Mapping) -> Verdict:
        """A verdict, also of the older shapes (`threshold`, `over` as a list or a mapping, `reason`)."""
        renamed = {k: v for k, v in data.items() if k not in _OLD_VERDICT}
        for old, new in _OLD_VERDICT.items():
            if old in data and new not in renamed:
                renamed[new] = list(data[old]) if new == "models_over" else data[old]
        return super().from_dict(renamed)


@dataclass
class Manifest(_Part):
    """A run's manifest (see the module docstring). `settings` holds the recorded run settings and
    any other top-level key, written back flat."""

    run_id: str
    status: RunStatus = RunStatus.RUNNING
    started_at: str | None = None
    ended_at: str | None = None
    resumed_at: str | None = None
    started_by: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    notebooks: list[NotebookEntry] = field(default_factory=list)
    input: Input | None = None
    executions: dict[str, dict[int, Execution]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    batch_stats: dict[int, dict[str, dict]] = field(default_factory=dict)
    batch_states: dict[int, BatchState] = field(default_factory=dict)
    merge_errors: dict[int, str] = field(default_factory=dict)
    store_error: str | None = None
    store_problems: list[str] = field(default_factory=list)
    error: str | None = None
    failed_executions: int | None = None
    models: dict[str, dict] = field(default_factory=dict)
    slowest: dict[str, list] = field(default_factory=dict)  # per model, its slowest records: [[id, seconds], ...]
    verdict: Verdict | None = None
    cells_counted_from: int = 0
    ALWAYS = ("run_id", "status", "started_at", "ended_at", "notebooks", "executions", "sinks")
    EXTRA = "settings"

    _CONVERTERS: ClassVar[dict] = {
        "status": RunStatus,
        "notebooks": lambda entries: [NotebookEntry.from_dict(e) for e in entries],
        "input": lambda value: None if value is None else Input.from_dict(value),
        "executions": lambda value: {key: _batches(Execution.from_dict)(batches) for key, batches in value.items()},
        "batch_stats": _batches(),
        "batch_states": _batches(BatchState),
        "merge_errors": _batches(),
        "verdict": lambda value: Verdict.from_dict(value) if isinstance(value, Mapping) else None,
    }

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        return cls._CONVERTERS.get(name, lambda v: v)(value)

    @classmethod
    def from_dict(cls, data: Mapping) -> Manifest:
        """A manifest from its JSON form (a run directory's file, a `runs` document, the run
        context's working copy). A `runs` document of an MLSM-style call lists its models' registry entries under
        `models`: they read as its notebooks."""
        data = {k: v for k, v in data.items() if k != "_id"}
        if isinstance(data.get("models"), list):
            data["notebooks"] = data.pop("models")
        if "run_id" not in data:
            raise MlsmError("manifest: no run_id")
        return super().from_dict(data)

    @classmethod
    def of(cls, manifest: Manifest | Mapping) -> Manifest:
        """`manifest` typed: as it is when it is one, else read from its JSON form."""
        return manifest if isinstance(manifest, Manifest) else cls.from_dict(manifest)

    # -- typed reads ---------------------------------------------------------------

    def setting(self, name: str, default: Any = None) -> Any:
        """A recorded run setting (`engine`, `bundle`, `branch`, `parameters`, `status_override`, ...)."""
        return self.settings.get(name, default)

    @property
    def id_field(self) -> str:
        return self.settings.get("id_field", "id")

    def execution(self, key: str, batch: int) -> Execution | None:
        return self.executions.get(key, {}).get(batch)

    def merge_error_lines(self) -> list[str]:
        """Why batches could not be merged, in batch order."""
        return [self.merge_errors[batch] for batch in sorted(self.merge_errors)]


def manifest_dict(manifest: Manifest | Mapping) -> dict:
    """The JSON form of a manifest given typed or as a mapping (a mapping is taken as it is)."""
    return manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)


def load_manifest(path: str | Path) -> Manifest:
    """The manifest in `path`; MlsmError naming the file when it is missing, not JSON or not a manifest."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Manifest.from_dict(data)
    except (OSError, ValueError, MlsmError) as exc:
        raise MlsmError(f"{path}: no readable run manifest ({exc})") from None


def save_manifest(path: str | Path, manifest: Manifest | Mapping) -> None:
    """Write the manifest atomically (a reader sees the old file or the new one, never half)."""
    write_json(Path(path), manifest_dict(manifest))
