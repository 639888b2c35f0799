"""What the runner's cells call inside an executed notebook: score the batch, show an overview of it.

Kept in the library (not pasted into cells) so the executed notebook stays
short to read and the papermill engine runs the very code the in-process
engine runs.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from .._gc import full_collections_deferred
from ..core.batch import BatchOutcome, by_id, score_batch
from ..core.cells import set_layout, source_digest
from ..core.model import Model, build_model, split_model_key
from ..core.timelimit import PID, Board
from ..files import atomic_file, read_jsonl
from .overview import BatchOverview


def model_from_namespace(namespace: Mapping, status: str | None = None, declared: Mapping | None = None) -> Model:
    """The Model or SummaryModel that a notebook's executed production cells define.

    `declared` (name, version, status, kind, fields, models: the literals lint read, as the in-process
    engine uses them) wins over the namespace, where a later cell may have rebound those names;
    without it (authoring, runs of earlier versions) the namespace's values are used.
    """
    if declared is None:
        summary = isinstance(namespace.get("models"), list)
        declared = {"name": namespace["name"], "version": namespace["version"], "status": namespace["status"],
                    "kind": "summary" if summary else "model", "fields": namespace.get("fields"),
                    "models": namespace.get("models")}
    return build_model({**declared, "status": status or declared["status"]}, namespace, {})


def load_dependencies(paths: Mapping[str, str]) -> dict[tuple[str, str], list[dict]]:
    """Entries of the models a summary needs, from their output files ("name@version" -> path)."""
    loaded = {}
    for key, path in paths.items():
        loaded[split_model_key(key)] = list(read_jsonl(Path(path)))
    return loaded


@full_collections_deferred()  # see mlsm_nb._gc
def score_file_batch(model: Model, batch_path: str, output_path: str, dependencies: Mapping[str, str] | None = None,
                     limit: Mapping | None = None) -> tuple[BatchOutcome, list[dict]]:
    """Read a batch file, score it, write the entries (one JSON line per record, batch order); returns the
    outcome and the records. `limit`: the per-record time limit, as the engine gives it (see
    `run_in_notebook`)."""
    records = list(read_jsonl(Path(batch_path)))
    limit = limit or {}
    board = Board.at(limit["board"]) if limit.get("board") else Board()
    board.cells[PID] = os.getpid()  # the runner stops this kernel should a record be stuck where no interrupt reaches
    try:
        outcome = score_batch(model, records, load_dependencies(dependencies or {}), limit=limit.get("seconds"),
                              board=board, stuck={int(p): s for p, s in (limit.get("stuck") or {}).items()},
                              keep_json=True)
    finally:
        board.close()
    with atomic_file(Path(output_path), "wb") as f:
        f.write(outcome.json_lines)
    return outcome, records


def lay_out_kernel_cells(namespace: MutableMapping, cells: Mapping[str, tuple[int, str, int]]) -> None:
    """Record in the kernel's namespace where the production cells it ran are (see `core.cells`): IPython
    keeps each cell's code in `linecache` under a file name of its own, without the cell's leading blank
    lines; `cells` maps a cell's source digest to its index, tag and leading blank lines."""
    for filename, entry in list(linecache.cache.items()):
        if len(entry) == 4 and entry[1] is None:  # IPython's cells have no modification time
            known = cells.get(source_digest("".join(entry[2])))
            if known is not None:
                index, tag, leading = known
                set_layout(namespace, filename, [(1 - leading, index, tag)])


def run_in_notebook(namespace: MutableMapping, batch_path: str, output_path: str,
                    dependencies: Mapping[str, str] | None = None, status: str | None = None,
                    declared: Mapping | None = None, cells: Mapping | None = None,
                    limit: Mapping | None = None) -> BatchOverview:
    """The runner cell: score this notebook's model over the batch and keep its overview.

    `cells` (see `lay_out_kernel_cells`) lets a score error name the cell and line it was raised in.
    `limit`: the per-record time limit, ``{"seconds": s or None, "board": path of the board the runner
    reads, "stuck": {position: seconds} of records found stuck before, "id_field": ...}`` (see
    `core.timelimit`).
    """
    lay_out_kernel_cells(namespace, cells or {})
    model = model_from_namespace(namespace, status, declared)
    outcome, records = score_file_batch(model, batch_path, output_path, dependencies, limit)
    id_field, stuck = (limit or {}).get("id_field", "id"), (limit or {}).get("stuck") or {}
    return BatchOverview(outcome, by_id(outcome.slowest, records, id_field),
                         by_id(sorted((int(p), s) for p, s in stuck.items()), records, id_field),
                         [record.get(id_field) for record in records])
