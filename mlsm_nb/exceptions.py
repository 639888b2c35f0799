"""Errors raised by mlsm-nb.

Every error renders as one line that names what it is about (file, cell, record,
field), so the CLI can print it as is::

    MlsmError                  root of everything mlsm-nb raises
    ├── ConfigError            a model or run is set up wrongly (duplicate model,
    │   │                      unknown dependency, bad field spec)
    │   ├── SettingsError      a run setting that cannot work (bad or conflicting
    │   │                      options, an unknown parameter): the CLI's exit 2
    │   ├── FieldSpecError     a `fields` entry that cannot be understood
    │   └── SummaryModelListException  a summary model needs results that no
    │                          model of the run produces (MLSM's name)
    ├── RecordError            a record that cannot be scored at all (not a
    │                          mapping, no id); carries its position and id
    ├── NotebookError          a notebook breaks the contract; carries path,
    │                          cell index and tag (shown as `cell_ref` shows it)
    ├── BundleError            an extracted bundle is missing or was altered
    ├── ModelTestError         Model.test() found generated inputs that fail
    └── ScoreError             Model.score() on a record the model fails on;
                               carries the error kind and entry

Failures of one model on one record are not exceptions: they become
``{"_error": ..., "_error_kind": ...}`` result entries (see ``ERROR_KINDS``);
when the score function raised, ``_error`` is the exception's message (as
MLSM stored it), ``_error_type`` its class name and ``_error_at`` the cell and
line it was raised in (``cell 5 [score], line 13``; see ``core.cells``).

Every message names a cell as JupyterLab counts it, from 1, with its tag (`cell_ref`);
the data keeps the cell's index (from 0): `NotebookError.cell`, `metadata.mlsm.source_cell`,
bundle cell markers, manifests.
"""

from __future__ import annotations

ERROR_KINDS = (
    "missing_field",
    "bad_type",
    "bad_value",
    "score_raised",
    "bad_output",
    "missing_dependency",
    "notebook_failed",
)


class MlsmError(Exception):
    """Root of every error mlsm-nb raises."""


class ConfigError(MlsmError):
    """A model, summary model or run is configured wrongly."""


class SettingsError(ConfigError):
    """A run setting that cannot work: a bad value, options that conflict, a parameter no notebook defines."""


class FieldSpecError(ConfigError):
    """A `fields` entry that cannot be understood."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"field {field!r}: {message}")


class SummaryModelListException(ConfigError):
    """A summary model needs results of a model (name, version) that the run does not include."""


class RecordError(MlsmError):
    """A record that cannot be scored at all (not a mapping, no id)."""

    def __init__(self, message: str, position: int | None = None, record_id=None):
        self.position = position
        self.record_id = record_id
        where = []
        if position is not None:
            where.append(f"record #{position}")
        if record_id is not None:
            where.append(f"id {record_id!r}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class NotebookError(MlsmError):
    """A notebook breaks the contract; names the file, cell index and tag."""

    def __init__(self, path, message: str, cell: int | None = None, tag: str | None = None):
        self.path = str(path)
        self.cell = cell
        self.tag = tag
        self.message = message
        super().__init__(format_location(self.path, cell, tag) + f": {message}")


class DataFileError(MlsmError, ValueError):
    """A run's JSON Lines file (a batch, a model's outputs, results) that does not hold what it must."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class BundleError(MlsmError):
    """An extracted bundle is missing, incomplete or was altered."""


class ModelTestError(MlsmError):
    """Model.test() found generated inputs on which the model fails."""

    def __init__(self, model: str, failures: list):
        self.failures = failures
        first_input, first_error = failures[0]
        super().__init__(
            f"model {model}: {len(failures)} generated input(s) failed; first: "
            f"{first_error['_error_kind']}: {describe_error(first_error)} on input {first_input!r}"
        )


class ScoreError(MlsmError):
    """Model.score() on a record the model fails on: `kind` is the entry's `_error_kind`, `entry` the entry."""

    def __init__(self, model: str, entry: dict):
        self.kind = entry["_error_kind"]
        self.entry = entry
        super().__init__(f"model {model}: {self.kind}: {describe_error(entry)}")


def describe_error(entry) -> str:
    """An error entry's message for people, when the score raised:
    ``ZeroDivisionError at cell 4 [score], line 13: division by zero``."""
    kind = entry.get("_error_type")
    if not kind:
        return str(entry["_error"])
    at = entry.get("_error_at")
    return f"{kind} at {at}: {entry['_error']}" if at else f"{kind}: {entry['_error']}"


CELLS_COUNTED_FROM = 1  # the number `cell_ref` gives a notebook's first cell (a run's manifest records it)
_FIRST_LINE = 40  # characters of a cell's first line `cell_ref` shows


def cell_ref(index: int, tag: str | None = None, source: str | None = None) -> str:
    """A notebook cell as people find it: ``cell 14 [score]``, the one way every message names a cell.

    `index` is the cell's position in the notebook's cells (from 0, markdown cells counted: what
    `metadata.mlsm.source_cell`, bundle cell markers and manifests keep); people read it as JupyterLab's
    status bar counts, from 1 (``Cell 14/20``). `tag` "" is an untagged cell (``untagged cell 9``), None a
    cell whose tag is not said. `source`, given where the number and tag alone do not say which cell it is
    (an untagged one), adds the cell's first line: ``untagged cell 9 (`model = fit(X, y)`)``.
    """
    text = f"cell {index + CELLS_COUNTED_FROM}"
    if tag:
        text += f" [{tag}]"
    elif tag == "":
        text = "untagged " + text
    line = next((line.strip() for line in (source or "").splitlines() if line.strip()), "")
    if line:
        cut = line if len(line) <= _FIRST_LINE else line[:_FIRST_LINE - 1].rstrip() + "…"
        text += f" (`{cut}`)"
    return text


def format_location(path, cell: int | None = None, tag: str | None = None) -> str:
    """`path:cell N [tag]` (see `cell_ref`; `cell` is the cell's index), the prefix of every notebook message."""
    text = str(path)
    if cell is not None:
        return f"{text}:{cell_ref(cell, tag or None)}"
    return f"{text} [{tag}]" if tag else text
