"""Read input records (JSON Lines, CSV, Parquet), reject bad ones, write JSON Lines.

Tabular files are flat: the id column plus one column per field. Missing
values (NaN, empty cells) become None and numpy scalars become Python values,
so a record reads the same whatever file it came from.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from ..exceptions import MlsmError
from ..files import to_native

TABULAR_CHUNK = 50_000


class InputFileError(MlsmError):
    """A records file that cannot be read at all (missing, empty, no id column)."""


@dataclass
class Rejected:
    """An input line that is not a scorable record."""

    line: int
    reason: str
    record_id: Any = None

    def to_dict(self) -> dict:
        return {"line": self.line, "id": self.record_id, "reason": self.reason}


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _native(value: Any) -> Any:
    value = to_native(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except ValueError as exc:
                yield number, Rejected(number, f"not valid JSON: {exc}")


def _table_rows(frames: Iterable, id_field: str, path: Path) -> Iterator[tuple[int, Any]]:
    number = 1  # the header is line 1
    for frame in frames:
        if id_field not in frame.columns:
            raise InputFileError(f"{path}: no id column {id_field!r} (columns: {', '.join(map(str, frame.columns))})")
        columns = [c for c in frame.columns if c != id_field]
        for row in frame.itertuples(index=False, name=None):
            number += 1
            values = dict(zip(frame.columns, map(_native, row)))
            yield number, {id_field: values[id_field], "data": {c: values[c] for c in columns}}


def _csv(path: Path, id_field: str):
    import pandas as pd

    try:
        chunks = pd.read_csv(path, chunksize=TABULAR_CHUNK, keep_default_na=True)
        yield from _table_rows(chunks, id_field, path)
    except pd.errors.EmptyDataError:
        raise InputFileError(f"{path}: the file is empty") from None


def _parquet(path: Path, id_field: str):
    import pyarrow.parquet as pq

    batches = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=TABULAR_CHUNK))
    yield from _table_rows(batches, id_field, path)


_FORMATS = {(".jsonl", ".jsonl.gz", ".ndjson"): "jsonl", (".csv", ".csv.gz"): "csv", (".parquet",): "parquet"}


def check_records_file(path: str | Path) -> str:
    """The format of a records file ("jsonl", "csv", "parquet"); InputFileError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty")
    for endings, kind in _FORMATS.items():
        if path.name.lower().endswith(endings):
            return kind
    raise InputFileError(f"{path}: unknown records format; use .jsonl, .jsonl.gz, .csv or .parquet")


def read_records(path: str | Path, id_field: str = "id") -> Iterator[tuple[int, dict | Rejected]]:
    """Yield (line number, record) or (line number, Rejected) for each input line.

    Raises InputFileError for a missing or empty file, an unknown format, or a
    table without the id column. Records need the id and a `data` mapping; ids
    must be unique within the file.
    """
    path = Path(path)
    kind = check_records_file(path)
    readers = {"jsonl": lambda: _json_lines(path), "csv": lambda: _csv(path, id_field),
               "parquet": lambda: _parquet(path, id_field)}
    rows = readers[kind]()
    seen: dict = {}  # id -> line of its first appearance
    count = 0
    for number, record in rows:
        count += 1
        yield number, _checked(number, record, id_field, seen)
    if count == 0:
        raise InputFileError(f"{path}: the file holds no records")


def _checked(number: int, record: Any, id_field: str, seen: dict) -> dict | Rejected:
    if isinstance(record, Rejected):
        return record
    if not isinstance(record, dict):
        return Rejected(number, f"a record must be a JSON object, got {type(record).__name__}")
    record_id = record.get(id_field)
    if record_id is None:
        return Rejected(number, f"no id field {id_field!r}")
    if not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
        return Rejected(number, f"id must be a string or an integer, got {type(record_id).__name__}", record_id)
    if not isinstance(record.get("data"), dict):
        return Rejected(number, "'data' must be an object", record_id)
    if record_id in seen:
        return Rejected(number, f"duplicate id {record_id!r} (first on line {seen[record_id]})", record_id)
    seen[record_id] = number
    return record
