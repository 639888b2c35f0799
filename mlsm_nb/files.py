"""File helpers shared by the run directory and bundles: atomic writes, JSON Lines, hashes.

JSON Lines go through orjson: batches and results are read and written once per
notebook and batch, and the standard library's json was most of a run's time.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import orjson
from pathlib import Path
from typing import Any, Iterable, Iterator


def to_native(value: Any) -> Any:
    """numpy scalars -> the Python value they hold; anything else unchanged."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    return value


def _json_default(value: Any) -> Any:
    native = to_native(value)
    if native is not value:
        return native
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; numpy values and sets are converted, anything else unknown raises TypeError."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _atomic(path: Path, write, mode: str = "w") -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a half file nor a .tmp
        raise
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    _atomic(path, lambda f: f.write(json.dumps(value, indent=2, default=_json_default) + "\n"))


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write rows as JSON Lines atomically; returns how many."""
    count = 0

    def write(f):
        nonlocal count
        for row in rows:
            f.write(dumps(row) + b"\n")
            count += 1

    _atomic(path, write, "wb")
    return count


def read_jsonl(path: Path) -> Iterator[Any]:
    """The rows of a JSON Lines file."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
