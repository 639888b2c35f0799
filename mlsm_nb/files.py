"""File helpers shared by the run directory and bundles: atomic writes, JSON Lines, hashes.

JSON Lines go through orjson: batches and results are read and written once per
notebook and batch, and the standard library's json was most of a run's time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson

from .exceptions import DataFileError


def to_native(value: Any) -> Any:
    """numpy scalars -> the Python value they hold; anything else unchanged."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def _json_default(value: Any) -> Any:
    native = to_native(value)
    if native is not value:
        return native
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; numpy values and sets are converted, anything else unknown raises TypeError."""
    return orjson.dumps(value, default=_json_default, option=_OPTIONS)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file written in full or not at all: it replaces `path` when the block ends, and a failure
    inside the block leaves neither a half file nor a .tmp."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    """Write JSON, indented, atomically (a reader never sees half a file). With orjson: a run saves its
    manifest after every execution, and the standard library's encoder took 30 ms to write one of 60."""
    with atomic_file(path, "wb") as f:
        f.write(orjson.dumps(value, default=_json_default, option=_OPTIONS | orjson.OPT_INDENT_2) + b"\n")


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write rows as JSON Lines atomically; returns how many."""
    return write_lines(path, map(dumps, rows))


LINES_PER_WRITE = 1024


def write_lines(path: Path, lines: Iterable[bytes]) -> int:
    """Write JSON Lines given encoded (each line's bytes, without its newline) atomically; returns how many.
    Written a thousand lines at a time: each write lets the run's other threads take the interpreter."""
    count, lines = 0, iter(lines)
    with atomic_file(path, "wb") as f:
        while chunk := list(islice(lines, LINES_PER_WRITE)):
            f.write(b"\n".join(chunk) + b"\n")
            count += len(chunk)
    return count


class _RowWriter:
    def __init__(self, f: IO[bytes]):
        self._f = f
        self.count = 0

    def __call__(self, row: Any) -> None:
        self._f.write(dumps(row) + b"\n")
        self.count += 1


@contextlib.contextmanager
def jsonl_writer(path: Path) -> Iterator[_RowWriter]:
    """`write(row)` one JSON line at a time (`write.count` so far); the file appears whole when the block ends."""
    with atomic_file(path, "wb") as f:
        yield _RowWriter(f)


def read_jsonl(path: Path) -> Iterator[Any]:
    """The rows of a JSON Lines file; a line that is not JSON raises `DataFileError` naming the file and line."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DataFileError(path, f"line {number} is not JSON ({exc.msg}, column {exc.pos + 1})") from None
                yield row


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, 1 MiB at a time (for one pass that hashes or counts without holding the file)."""
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    for chunk in file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def count_lines(path: Path) -> int:
    """How many newlines a file holds (a JSON Lines file's rows), counted in chunks without parsing."""
    return sum(chunk.count(b"\n") for chunk in file_chunks(path))


def write_failure(root: Path, exc: OSError) -> str:
    """Why a run could not write into its folder `root`, and what to do, in one line."""
    what = f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
    if not Path(root).is_dir():
        return f"{root}: the run directory was removed while the run wrote it; start the run again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{root}: {what}; make the folder writable, then --resume"
    return f"{root}: {what}; free the space or fix the folder, then --resume"
