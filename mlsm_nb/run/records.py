"""Read input records (JSON Lines, CSV, Parquet) as a stream, rejecting bad lines one at a time.

Every line stands alone: one that cannot be decoded, parsed or written back
(not UTF-8, not JSON, nested too deeply, a bad id, a ragged row) is a
`Rejected` with its line number and reason, and reading goes on. Only a file
that cannot be read at all raises InputFileError (missing, a directory, empty,
UTF-16, not gzip or not Parquet despite its name, no id column).

The file is opened once and parsed once; the bytes read are hashed as they are
read (a `.gz` file's compressed bytes; a Parquet file is read through once
before it is parsed, as Parquet is read out of order), so the sha256 a run
records is that of what it scored. A file that changes while it is read (its
size, modification time or inode, or fewer bytes read than it had) raises
`InputChanged`: what was read is no one version of the file.

Tabular files are flat: the id column plus one column per field. CSV cells
are read as text and converted one by one: ids stay strings exactly as
written (leading zeros, any number of digits); a field declared `str`
(`types`) keeps its text, even empty; one declared `int`, `float` or `bool`
is converted to it when its text is one (`3.0` is an int: pandas writes an
int column with a missing cell so) and left as text otherwise (the model
then rejects that one row); an undeclared column becomes a number or
a bool when its text is one. Outside `str` fields an empty cell (or `NA`,
`NaN`, `null`) is None. Parquet columns keep their types;
values JSON cannot hold (timestamps, decimals) are converted like CSV text.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from .._gc import full_collections_deferred
from ..core.fields import parse_fields
from ..core.ids import IdIndex
from ..core.records import INT64, Rejected, check_records
from ..exceptions import ConfigError, FieldSpecError, MlsmError
from ..files import count_lines, dumps, file_sha256, jsonl_writer

TABULAR_CHUNK = 50_000
ID_CHUNK = 4096  # records checked for duplicate ids at once (see core.ids.IdIndex)
DEEP = 200  # fewer opening brackets than this cannot nest past orjson's 254 levels: no need to check
_MISSING_TEXT = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})
_INT_TEXT = re.compile(r"[+-]?\d+\Z")
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_CUT_SHORT = (EOFError, zlib.error, gzip.BadGzipFile)


class InputFileError(MlsmError):
    """A records file that cannot be read at all (missing, empty, wrong format, no id column)."""


class InputChanged(InputFileError):
    """The records file changed while it was read: the records read are no one version of the file."""

    def __init__(self, path: Path, how: str):
        self.path = path
        super().__init__(f"{path}: the records file changed while the run read it ({how})")


class CutShort(Rejected):
    """Where the file breaks off: nothing after this line could be read."""


def declared_types(fields: Iterable[Mapping | None]) -> dict[str, str]:
    """Field name -> type name over several models' `fields`; a field declared with two types is left out."""
    types: dict[str, str] = {}
    conflicting: set[str] = set()
    for model_fields in fields:
        try:
            specs = parse_fields(model_fields or {})
        except FieldSpecError:
            continue  # lint reports it; the reader only loses a type hint
        for spec in specs:
            if types.setdefault(spec.name, spec.type) != spec.type:
                conflicting.add(spec.name)
    return {name: kind for name, kind in types.items() if name not in conflicting}


# -- text to values -------------------------------------------------------------------------

def _int64(text: str) -> int | None:
    """The integer an integer's text holds, if it fits in 64 bits."""
    if _INT_TEXT.match(text.strip()):
        value = int(text)
        return value if INT64[0] <= value <= INT64[1] else None
    return None


def _float_or_text(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _int_or_text(text: str) -> Any:
    value = _int64(text)
    if value is not None:
        return value
    number = _float_or_text(text)  # "3.0": what pandas writes for an int column with a missing cell
    if type(number) is float and number.is_integer() and INT64[0] <= number <= INT64[1]:
        return int(number)
    return text


def _bool_or_text(text: str) -> Any:
    return _BOOL_TEXT.get(text.strip().lower(), text)


def _undeclared(text: str) -> Any:
    value = _int64(text)
    if value is not None:
        return value
    value = _float_or_text(text)
    if value is text and text.strip().lower() in ("true", "false"):
        return _BOOL_TEXT[text.strip().lower()]
    return value


_CONVERT = {"int": _int_or_text, "float": _float_or_text, "bool": _bool_or_text}


def _from_text(kind: str | None, text: str) -> Any:
    """A cell's value from its text, by the field's declared type (None: undeclared)."""
    if kind == "str":
        return text
    if text in _MISSING_TEXT:
        return None
    return (_CONVERT[kind] if kind else _undeclared)(text)


# -- files ----------------------------------------------------------------------------------

def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


class _Input(io.RawIOBase):
    """A records file opened once: every byte read is hashed and counted, and `check` says whether the
    file is still the one opened (same inode, size and modification time; `at_end`: read to its end)."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "rb", buffering=0)
        self._opened = os.fstat(self._file.fileno())
        self._digest = hashlib.sha256()
        self._read = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._ended:
            return 0
        count = self._file.readinto(buffer)
        if count:
            self._digest.update(memoryview(buffer)[:count])
            self._read += count
        else:
            self._ended = True
        return count

    def __exit__(self, *exc) -> None:  # the file itself stays open until here, whatever its readers close
        self._file.close()
        self.close()

    def stream(self) -> io.BufferedIOBase:
        """The file's bytes (decompressed when its name ends in .gz), read through this hashing reader."""
        buffered = io.BufferedReader(self, 1 << 16)
        return gzip.GzipFile(fileobj=buffered, mode="rb") if _is_gzip(self.path) else buffered

    def again(self) -> io.BufferedReader:
        """The opened file again, for reading out of order (Parquet), once it has been hashed."""
        return open(self._file.fileno(), "rb", closefd=False)

    def sha256(self) -> str:
        """The sha256 of every byte of the file, once it has been read to its end (the rest is read now)."""
        while self.readinto(bytearray(1 << 16)):
            pass  # what a reader left unread (e.g. a gzip trailer): hashed too, so the size check holds
        return self._digest.hexdigest()

    def check(self, at_end: bool = False) -> None:
        """InputChanged when the file is no longer the one opened, or (`at_end`) was not read whole."""
        opened, now = self._opened, os.fstat(self._file.fileno())
        try:
            there = os.stat(self.path)
        except OSError:
            there = None
        if there is None or (there.st_dev, there.st_ino) != (opened.st_dev, opened.st_ino):
            how = "it was removed or renamed" if there is None else "another file took its place"
        elif now.st_size != opened.st_size:
            how = f"its size went from {opened.st_size:,} to {now.st_size:,} bytes"
        elif now.st_mtime_ns != opened.st_mtime_ns:
            how = "it was written to (its modification time changed)"
        elif at_end and self._read != opened.st_size:
            how = f"{self._read:,} of its {opened.st_size:,} bytes could be read"
        else:
            return
        raise InputChanged(self.path, how)


def _cut_short(number: int, exc: BaseException) -> CutShort:
    return CutShort(number, f"the compressed file is cut short or corrupt here ({exc}); "
                            "nothing after this line could be read")


def _json_problem(line: bytes, exc: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 (byte 0x{line[bad.start]:02x} at column {bad.start + 1})"
    return f"not valid JSON: {exc}"


def _may_repeat_a_key(line: bytes, record: Any) -> bool:
    """Whether `line` may hold a key twice in one object (orjson keeps the last). Every key is followed by
    a colon, so a line with no more colons than `record` has keys repeats none: a flat record without a
    colon in its text is cleared by counting, anything else by counting the colons it serialises to."""
    colons = line.count(b":")
    if type(record) is dict:
        data = record.get("data")
        if colons == len(record) + (len(data) if type(data) is dict else 0):
            return False
    try:
        return colons > orjson.dumps(record).count(b":")
    except orjson.JSONEncodeError:  # nested too deeply: rejected as such next
        return False


class _Repeated(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Repeated(key)
        seen.add(key)
    return dict(pairs)


def _repeated_key(line: bytes) -> str | None:
    """The first key `line` repeats within one object, read slowly (only lines `_may_repeat_a_key`)."""
    import json

    try:
        json.loads(line, object_pairs_hook=_unique_pairs)
    except _Repeated as repeated:
        return repeated.args[0]
    except ValueError:  # what orjson reads and json does not: no repeated key known
        pass
    return None


def _json_lines(source: _Input, lines: dict[int, bytes] | None = None) -> Iterator[tuple[int, Any]]:
    """(number, record or Rejected) of each line; `lines` gets each record's line as it was read (number -> its
    bytes, without the line break), for a batch file that copies them instead of encoding the records again."""
    number = 0
    with source.stream() as f:
        try:
            for number, line in enumerate(f, 1):
                if number == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8):]
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, Rejected(number, _json_problem(line, exc))
                    continue
                if _may_repeat_a_key(line, record):
                    repeated = _repeated_key(line)
                    if repeated is not None:
                        yield number, Rejected(number, f"the key {repeated!r} appears twice in one object "
                                                       "(JSON readers keep only the last): write each key once")
                        continue
                if line.count(b"[") + line.count(b"{") >= DEEP:
                    try:
                        dumps(record)
                    except (TypeError, orjson.JSONEncodeError) as exc:
                        yield number, Rejected(number, f"nested too deeply to be stored as JSON ({exc})")
                        continue
                if lines is not None:
                    lines[number] = line.rstrip(b"\r\n")
                yield number, record
        except _CUT_SHORT as exc:
            yield number + 1, _cut_short(number + 1, exc)


def _csv(source: _Input, id_field: str, types: Mapping[str, str]) -> Iterator[tuple[int, Any]]:
    path = source.path
    with io.TextIOWrapper(source.stream(), encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        if not header:
            raise InputFileError(f"{path}: the file is empty (the first line must be the header)")
        if id_field not in header:
            raise InputFileError(f"{path}: no id column {id_field!r} (columns: {', '.join(header)})")
        at = header.index(id_field)
        kinds = [types.get(name) for name in header]
        number = rows.line_num
        while True:
            start = number + 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                number = rows.line_num
                yield start, Rejected(start, f"not valid CSV: {exc}")
                continue
            except _CUT_SHORT as exc:
                yield start, _cut_short(start, exc)
                return
            number = rows.line_num
            if not row:
                continue
            yield start, _csv_row(start, row, header, kinds, at, id_field)


def _csv_row(number: int, row: list[str], header: list[str], kinds: list, at: int, id_field: str) -> Any:
    if len(row) != len(header):
        return Rejected(number, f"has {len(row)} cells where the header has {len(header)}")
    try:
        "".join(row).encode("utf-8")
    except UnicodeEncodeError:
        return Rejected(number, "not valid UTF-8")
    if not row[at].strip():
        return Rejected(number, f"the id cell {id_field!r} is empty")
    data = {name: _from_text(kind, cell) for i, (name, kind, cell) in enumerate(zip(header, kinds, row,
                                                                                    strict=False)) if i != at}
    return {id_field: row[at], "data": data}


def _parquet_value(kind: str | None, value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return _from_text(kind, text)


def _parquet(source: _Input, id_field: str, types: Mapping[str, str]) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = source.path
    source.sha256()  # Parquet is read out of order: one sequential read first hashes every byte
    try:
        table = pq.ParquetFile(source.again())
        names = table.schema_arrow.names
        if id_field not in names:
            raise InputFileError(f"{path}: no id column {id_field!r} (columns: {', '.join(names)})")
        number = 1  # line 1 is the header, as in CSV
        for batch in table.iter_batches(batch_size=TABULAR_CHUNK):
            for row in batch.to_pylist():
                number += 1
                record_id = _parquet_value(None, row.pop(id_field))
                yield number, {id_field: record_id,
                               "data": {name: _parquet_value(types.get(name), v) for name, v in row.items()}}
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(f"{path}: not a readable Parquet file: {exc}") from None


_FORMATS = {(".jsonl", ".jsonl.gz", ".ndjson"): "jsonl", (".csv", ".csv.gz"): "csv", (".parquet",): "parquet"}


def _first_bytes(path: Path, kind: str) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(4)
    except gzip.BadGzipFile:
        raise InputFileError(f"{path}: not a gzip file, though its name ends in .gz") from None
    except (EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: the compressed file is cut short or corrupt ({exc})") from None


def check_records_file(path: str | Path) -> str:
    """The format of a records file ("jsonl", "csv", "parquet"); InputFileError if unusable."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give a records file")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty")
    kind = next((k for endings, k in _FORMATS.items() if path.name.lower().endswith(endings)), None)
    if kind is None:
        raise InputFileError(f"{path}: unknown records format; use .jsonl, .jsonl.gz, .csv, .csv.gz or .parquet")
    start = _first_bytes(path, kind)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputFileError(f"{path}: the file is UTF-16 text; records files must be UTF-8 "
                             "(convert it, e.g. iconv -f UTF-16 -t UTF-8)")
    if kind == "parquet" and start != b"PAR1":
        raise InputFileError(f"{path}: not a Parquet file, though its name ends in .parquet")
    return kind


def estimate_records(path: str | Path) -> int | None:
    """About how many records a file holds, cheaply (for progress): its lines (no parsing), or a Parquet
    file's row count; None for a compressed file."""
    path = Path(path)
    kind = check_records_file(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if _is_gzip(path):
        return None
    return max(0, count_lines(path) - (kind == "csv"))


def planned_batches(counts: Mapping, expected: int | None, batch_size: int) -> int | None:
    """A run's batches, for progress: exact once the reader is done (`counts` holds "batches"), else
    estimated from the records `expected` (see `estimate_records`); None when unknown."""
    if "batches" in counts:
        return counts["batches"]
    return -(-expected // batch_size) if expected else None


def read_records(path: str | Path, id_field: str = "id", types: Mapping[str, str] | None = None,
                 counts: dict | None = None, lines: dict[int, bytes] | None = None
                 ) -> Iterator[tuple[int, dict | Rejected]]:
    """Yield (line number, record) or (line number, Rejected) for each input line.

    `types` (field name -> "int", "float", "str" or "bool", see `declared_types`)
    converts tabular cells by the models' field specs. Raises InputFileError
    for a file that cannot be read at all, and InputChanged for one that
    changes while it is read; a bad line is a Rejected. Records follow
    `core.records`' rules; ids must be unique within the file (`1` and `"1"`
    are two ids). `counts`, when given, gets the ``sha256`` of the bytes read
    once the file has been read to its end, unchanged. `lines`, when given, gets the line each record of a
    JSON Lines file was read from (line number -> bytes), ahead of the records: the caller takes each out.
    """
    path = Path(path)
    kind = check_records_file(path)
    types = dict(types or {})
    readers = {"jsonl": lambda: _json_lines(source, lines), "csv": lambda: _csv(source, id_field, types),
               "parquet": lambda: _parquet(source, id_field, types)}
    index = IdIndex()
    count = 0
    with _Input(path) as source:
        for chunk in _chunks(readers[kind](), ID_CHUNK):
            source.check()
            count += len(chunk)
            yield from check_records(chunk, id_field, index)
        digest = source.sha256()
        source.check(at_end=True)
    if count == 0:
        raise InputFileError(f"{path}: the file holds no records")
    if counts is not None:
        counts["sha256"] = digest


def input_identity(path: str | Path) -> dict:
    """What a run records of its records file before reading it: its size and modification time, which a
    resume compares when the run ended before its sha256 was known (see `check_same_input`)."""
    stat = os.stat(path)
    return {"size": stat.st_size, "modified_ns": stat.st_mtime_ns}


def check_same_input(recorded: Mapping, path: str | Path, run: str) -> None:
    """ConfigError when the records file at `path` is not the one `run` read (`recorded`: the manifest's
    "input"): another sha256, or, before the run had read it to its end, another size or modification time."""
    if recorded.get("sha256") is not None:
        if file_sha256(Path(path)) != recorded["sha256"]:
            raise ConfigError(f"{path}: the records file changed since {run} started")
        return
    now = input_identity(path)
    before = {key: recorded[key] for key in now if key in recorded}
    if before and before != {key: now[key] for key in before}:
        raise ConfigError(f"{path}: the records file changed since {run} started (its size or modification "
                          "time differs, and the run had not read it to its end); resume needs that file "
                          "unchanged (a copy made with cp -p keeps its time), or start a new run")


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    """Lists of `size` items (the last may be shorter), each read with full garbage collections deferred."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    items = iter(items)
    while True:
        chunk: list = []
        error = None
        with full_collections_deferred():
            try:
                for item in items:
                    chunk.append(item)
                    if len(chunk) == size:
                        break
            except Exception as exc:  # a file that breaks off (a corrupt Parquet row group, a read error)
                error = exc
        if chunk:  # what came before a read error counts
            yield chunk
        if error is not None:
            raise error
        if len(chunk) < size:
            return


class Batch(list):
    """A batch's records, and (`lines`) the JSON line each was read from, when the input is JSON Lines: its
    batch file is those lines, not the records encoded again. Pickled as the plain list of its records."""

    lines: list[bytes] | None = None

    def __reduce__(self):
        return list, (list(self),)


def read_batches(records: Path, id_field: str, batch_size: int, types: Mapping[str, str] | None,
                 rejected_path: Path, counts: dict, lines: bool = False) -> Iterator[tuple[int, Batch]]:
    """Yield (batch number, records) from the records file, read once; rejected lines are streamed to
    `rejected_path` (complete when the generator is). `counts` gets the input's counts and the sha256 of the
    bytes read when done, and `cut_short` (where and why) when the file breaks off. With `lines`, each batch
    of a JSON Lines file keeps the lines its records were read from (`Batch.lines`)."""
    count = batches = 0
    read: dict[int, bytes] | None = {} if lines else None
    batch, kept = Batch(), []
    with jsonl_writer(rejected_path) as reject:
        for number, record in read_records(records, id_field, types, counts, read):
            line = read.pop(number, None) if read is not None else None
            if isinstance(record, Rejected):
                reject(record.to_dict())
                if isinstance(record, CutShort):  # records were lost, however few lines say so: the run fails
                    counts["cut_short"] = f"line {record.line}: {record.reason}"
                continue
            batch.append(record)
            kept.append(line)
            count += 1
            if len(batch) == batch_size:
                yield batches, _with_lines(batch, kept)
                batches, batch, kept = batches + 1, Batch(), []
        if batch:
            yield batches, _with_lines(batch, kept)
            batches += 1
    counts.update(records=count, rejected=reject.count, batches=batches, complete=True)


def _with_lines(batch: Batch, lines: list[bytes | None]) -> Batch:
    batch.lines = None if None in lines else lines  # CSV and Parquet rows have no line of JSON
    return batch
