"""The scoring engine: apply models, then summary models, to many records.

`iter_models_all` streams (a generator of millions is never materialised);
`run_models_all` collects the records into a list, as MLSM's `RunModelsAll` did.
Each record gets ``record["results"][name][version]``; one model failing on one
record gives that entry an `_error` and everything else goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from .._gc import full_collections_deferred
from ..exceptions import ConfigError, RecordError, SummaryModelListException
from .model import Model, SummaryModel
from .records import record_problem, usable_id

log = logging.getLogger(__name__)

BadRecordPolicy = str | Callable[[RecordError, Any], None]


def plan_run(models: Sequence[Model], summary_models: Sequence[SummaryModel] = ()) -> tuple[Model, ...]:
    """Check a run's configuration and return the models in execution order.

    Raises ConfigError for a duplicate (name, version) or a non-model, and
    SummaryModelListException (a ConfigError) for a summary model needing
    results that no earlier model in the run produces.
    """
    plan = tuple(models) + tuple(summary_models)
    seen: set[tuple[str, str]] = set()
    for model in plan:
        if not isinstance(model, Model):
            raise ConfigError(f"expected Model or SummaryModel objects, got {type(model).__name__}: {model!r}")
        if model.key in seen:
            raise ConfigError(f"model {model.name} {model.version} appears twice in the run")
        for dep in getattr(model, "models", ()):
            if (dep["name"], dep["version"]) not in seen:
                raise SummaryModelListException(
                    f"summary model {model.name} {model.version} needs {dep['name']} {dep['version']}, "
                    "which is not among the models run before it")
        seen.add(model.key)
    return plan


def _bad_record_handler(policy: BadRecordPolicy) -> Callable[[RecordError, Any], None]:
    if callable(policy):
        return policy
    if policy == "warn":
        return lambda error, record: log.warning("skipped %s", error)
    if policy == "skip":
        return lambda error, record: None
    if policy == "raise":
        def _raise(error, record):
            raise error
        return _raise
    raise ConfigError(f"on_bad_record must be 'warn', 'skip', 'raise' or a callable, got {policy!r}")


def _progress(records: Iterable, enabled: bool, total: int | None) -> Iterable:
    if not enabled:
        return records
    from tqdm.auto import tqdm

    return tqdm(records, total=total, unit="rec", desc="scoring")


LIMITED_CHUNK = 1000  # records scored under one timer when there is a record_timeout


def _record_limit(record_timeout: float | None) -> float | None:
    """The per-record limit in seconds, or None (None or 0: no limit, as `--record-timeout 0`)."""
    if record_timeout is None or record_timeout == 0:
        return None
    if not 0 < record_timeout < float("inf"):  # also refuses NaN
        raise ConfigError(f"record_timeout must be a number of seconds (0 or None: no limit), got {record_timeout!r}")
    return float(record_timeout)


def iter_models_all(models: Sequence[Model], records: Iterable[Mapping],
                    summary_models: Sequence[SummaryModel] = (), *, id_field: str | None = "id",
                    progress: bool = False, total: int | None = None,
                    on_bad_record: BadRecordPolicy = "warn", record_timeout: float | None = None) -> Iterator[dict]:
    """Yield each record with its `results`, as the records stream in.

    A record that cannot be scored at all (see `core.records`: not a mapping,
    no valid id, no `data` mapping; with `id_field=None` no id is needed) is
    handed to `on_bad_record`: "warn" (log and skip, the default), "skip",
    "raise", or a callable ``(RecordError, record)``. With `record_timeout`
    (seconds), a model whose score runs longer on a record is interrupted and
    gives it a `timeout` entry (`core.timelimit`; records are then scored
    `LIMITED_CHUNK` at a time). The configuration is checked before the first
    record is read.
    """
    plan = plan_run(models, summary_models)
    limit = _record_limit(record_timeout)
    scorable = _scorable(_progress(records, progress, total), id_field, _bad_record_handler(on_bad_record))
    if limit is None:
        steps = tuple(model.execute for model in plan)
        for record in scorable:
            data = record["data"]
            results: dict = {}
            for step in steps:
                step(data, results)
            record["results"] = results
            yield record
        return
    from .batch import execute_within
    from .timelimit import Board

    board = Board()
    while chunk := list(islice(scorable, LIMITED_CHUNK)):
        datas, chunk_results = [record["data"] for record in chunk], [{} for _ in chunk]
        for model in plan:
            execute_within(model, datas, chunk_results, limit, board)
        for record, results in zip(chunk, chunk_results, strict=True):
            record["results"] = results
            yield record


def _scorable(records: Iterable, id_field: str | None, reject: Callable[[RecordError, Any], None]) -> Iterator[dict]:
    """The records that can be scored, as dicts; each other one is handed to `reject`."""
    for position, record in enumerate(records):
        problem = record_problem(record, id_field)
        if problem is not None:
            reject(RecordError(problem, position, usable_id(record, id_field)), record)
            continue
        yield record if type(record) is dict else dict(record)


@full_collections_deferred()
def run_models_all(models: Sequence[Model], records: Iterable[Mapping],
                   summary_models: Sequence[SummaryModel] = (), **options) -> list[dict]:
    """Score every record (see `iter_models_all` for the options); returns them in a list.

    Full garbage collections wait until it returns (see `mlsm_nb._gc`)."""
    return list(iter_models_all(models, records, summary_models, **options))
