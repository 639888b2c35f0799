"""`RunSettings`: every option of a run, declared once (type, default, help).

The library takes a `RunSettings`; the CLI builds `mlsm-nb run`'s options from
the same fields (`default` and `help`), so the two never disagree.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import SettingsError

DEFAULT_BATCH_SIZE = 50_000
DEFAULT_MAX_ERROR_RATE = 0.1
DEFAULT_RECORD_TIMEOUT = 60.0


def _option(default: Any, help: str, **extra) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


def _names_a_folder(run_id: str) -> bool:
    """Whether `run_id` can name a folder in --out: printable, not blank, . or .., no / or \\, no space at
    either end."""
    return (run_id == run_id.strip() and run_id not in ("", ".", "..") and run_id.isprintable()
            and "/" not in run_id and "\\" not in run_id)


@dataclass
class RunSettings:
    """How one run goes. Fields marked ``result=True`` change results: a resume must repeat them exactly;
    ``repeated=True``: the resume command printed repeats them too (the time limits: a resume may change them,
    but should not by accident)."""

    out: str = _option("runs", "Folder that holds run directories.")
    run_id: str | None = _option(None, "Name of the run directory (default: UTC time + random suffix).")
    batch_size: int = _option(DEFAULT_BATCH_SIZE, "Records per batch.", result=True)
    workers: int | None = _option(None, "Parallel executions (default: cores).")
    id_field: str = _option("id", "The records' identifier field.", result=True)
    timeout: float = _option(600.0, "Seconds a notebook cell (or an in-process batch) may run.", repeated=True)
    record_timeout: float = _option(DEFAULT_RECORD_TIMEOUT,
                                    "Seconds one record may take to score, per model: a record over it gets a "
                                    "`timeout` error entry and the rest of its batch is scored; 0: no limit.",
                                    repeated=True)
    resume: bool = _option(False, "Finish the run --run-id: skip executions already done and intact.")
    engine: str = _option("papermill", "papermill: execute the notebooks (audit path); "
                                       "inprocess: extracted models, no kernels.", result=True)
    warm_kernels: bool = _option(False, "With --engine papermill: a worker runs a notebook's next batch in the "
                                        "kernel that ran its last one, reset (namespace emptied), not in a new "
                                        "kernel: about twice as fast, but what lives outside the namespace "
                                        "(imported modules' state, environment variables, options) carries "
                                        "over between batches.", result=True)
    parameters: dict = _option({}, "Notebook parameters (names their `parameters` cells define).", result=True)
    branch: str | None = _option(None, "Git branch the notebooks come from; git-flow rules may force status draft.",
                                 result=True)
    bundle: str | None = _option(None, "With --engine inprocess: score with this extracted bundle of the notebooks.",
                                 result=True)
    scheduler: str | None = _option(None, "Run executions on Dask: a scheduler address (tcp://host:8786) or "
                                          "local:N for a LocalCluster of N worker processes. Needs "
                                          "pip install 'mlsm-nb[dask]'.")
    max_error_rate: float = _option(DEFAULT_MAX_ERROR_RATE,
                                    "Largest share of a model's records (and of input lines rejected) that may "
                                    "have errors before the run fails; 0 fails on any error, 1 never.")

    def __post_init__(self) -> None:
        from .engines import engine_names

        # Paths may come as pathlib.Path from Python callers; the manifest records text.
        self.out = str(self.out)
        self.bundle = str(self.bundle) if self.bundle is not None else None
        if self.engine not in engine_names():
            raise SettingsError(f"unknown engine {self.engine!r}; known engines: {', '.join(engine_names())}")
        if self.run_id is not None and not _names_a_folder(self.run_id):
            raise SettingsError(f"--run-id {self.run_id!r}: a run id names a folder in --out, so it holds no / or \\, "
                                "is not blank, . or .., and has no space at either end")
        if not 0 < self.timeout < float("inf"):  # also refuses NaN
            raise SettingsError(f"--timeout must be a number of seconds above 0, got {self.timeout}")
        if not 0 <= self.record_timeout < float("inf"):
            raise SettingsError(f"--record-timeout must be a number of seconds, 0 for no limit, "
                                f"got {self.record_timeout}")
        if self.batch_size < 1:
            raise SettingsError("batch size must be at least 1")
        if not 0 <= self.max_error_rate <= 1:
            raise SettingsError(f"--max-error-rate must be between 0 and 1, got {self.max_error_rate}")
        if self.resume and not self.run_id:
            raise SettingsError("--resume needs the --run-id of the run to finish")
        if self.warm_kernels and (self.engine != "papermill" or self.scheduler):
            raise SettingsError("--warm-kernels keeps papermill's kernels in this process: use it with --engine "
                              "papermill and without --scheduler")
        if self.bundle and self.engine != "inprocess":
            raise SettingsError("--bundle scores in-process: use it with --engine inprocess")
        if self.bundle and self.parameters:
            raise SettingsError(f"--bundle scores with the models as extracted, so --param "
                              f"{', '.join(sorted(self.parameters))} would not apply; run the notebooks "
                              "without --bundle to set parameters")

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of the setting `name` (for the CLI's options)."""
        spec = cls.spec(name)
        return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default

    @classmethod
    def help(cls, name: str) -> str:
        return cls.spec(name).metadata["help"]

    @classmethod
    def spec(cls, name: str) -> dataclasses.Field:
        return next(f for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def result_settings(cls) -> list[str]:
        """The settings that change results."""
        return cls._marked("result")

    @classmethod
    def repeated_settings(cls) -> list[str]:
        """The settings the resume command repeats besides those that change results."""
        return cls._marked("repeated")

    @classmethod
    def _marked(cls, mark: str) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get(mark)]


def resume_command(paths: Sequence[str], records: str, out: str, run_id: str, settings: Mapping[str, Any]) -> str:
    """The command that finishes a run: its notebooks, records, folder and id, and the settings a resume must
    repeat (`settings`: the run's settings by name, e.g. its manifest). Parameter values are not shown
    (they may be credentials)."""
    words = ["mlsm-nb", "run", *map(str, paths), "--records", str(records), "--out", str(out), "--run-id", run_id,
             "--resume"]
    for name in (*RunSettings.result_settings(), *RunSettings.repeated_settings()):
        value = settings.get(name, RunSettings.default(name))
        if name != "parameters" and value != RunSettings.default(name):
            words += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])  # True: a flag
    return shlex.join(words) + (" with the same --param values" if settings.get("parameters") else "")
