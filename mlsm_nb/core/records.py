"""The shape of an input record: one set of rules for `run_models_all` and `mlsm-nb run`.

A record is a mapping with an id (field `id` unless configured) and a `data`
mapping. Ids keep their JSON type, so they must be a string or an integer:
`1` and `"1"` are two records. A float id is refused (`1.0 == 1` would merge
two records, and NaN equals nothing), and so is a bool. An integer id must fit
in 64 bits (what MongoDB and JSON Lines readers hold) and a string id in
`MAX_ID_BYTES` bytes of UTF-8 (an id is stored, indexed and printed with
every result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ids import IdIndex, RequestIds

MAX_ID_BYTES = 1024
INT64 = (-(2 ** 63), 2 ** 63 - 1)


def id_problem(record_id: Any, id_field: str) -> str | None:
    """Why `record_id` cannot identify a record, or None when it can."""
    kind = type(record_id)
    if kind is str:
        if len(record_id) > MAX_ID_BYTES // 4 and len(record_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            return (f"id field {id_field!r} is {len(record_id.encode('utf-8', 'surrogatepass')):,} bytes long; "
                    f"the limit is {MAX_ID_BYTES:,}")
        return None
    if kind is int:
        if not INT64[0] <= record_id <= INT64[1]:
            return f"integer id field {id_field!r} does not fit in 64 bits; use a string id"
        return None
    if record_id is None:
        return f"id field {id_field!r} is null; an id is a string or an integer"
    if isinstance(record_id, str):  # a str subclass: its text is the id
        return id_problem(str(record_id), id_field)
    if kind is float:
        return f"id field {id_field!r} must be a string or an integer, got float {record_id!r}{_float_hint(record_id)}"
    return f"id field {id_field!r} must be a string or an integer, got {kind.__name__}"


def _float_hint(record_id: float) -> str:
    if record_id.is_integer() and abs(record_id) < 2 ** 53:  # 4.0: an integer written as a float
        return f" (write {int(record_id)}, without the fraction)"
    if abs(record_id) >= 2 ** 63:  # how a JSON reader gives an integer beyond 64 bits
        return " (JSON integers beyond 64 bits are read as floats: write such ids as strings)"
    return ""


def record_problem(record: Any, id_field: str | None = "id") -> str | None:
    """Why `record` cannot be scored, or None when its shape is right.

    With `id_field=None` records need no id (MLSM's `RunModelsAll` without a database).
    """
    if not isinstance(record, Mapping):
        return f"is a {type(record).__name__}, not a mapping"
    if id_field is not None:
        if id_field not in record:
            return f"has no id field {id_field!r}"
        problem = id_problem(record[id_field], id_field)
        if problem is not None:
            return problem
    if "data" not in record:
        return "'data' is missing (a record's fields go in a 'data' mapping)"
    data = record["data"]
    if type(data) is not dict and not isinstance(data, Mapping):
        return f"'data' must be a mapping, got {type(data).__name__}"
    return None


def usable_id(record: Any, id_field: str | None) -> Any:
    """The record's id when it is a valid one (to name the record in an error), else None."""
    if id_field is None or not isinstance(record, Mapping):
        return None
    record_id = record.get(id_field)
    return record_id if id_problem(record_id, id_field) is None else None


@dataclass
class Rejected:
    """An input line that is not a scorable record."""

    line: int
    reason: str
    record_id: Any = None

    def to_dict(self) -> dict:
        return {"line": self.line, "id": self.record_id, "reason": self.reason}


def check_records(numbered: Sequence[tuple[int, Any]], id_field: str, index: IdIndex | RequestIds,
                  where: str = "on line") -> list[tuple[int, dict | Rejected]]:
    """Each (number, record) as it is when the record is scorable and its id new to `index` (which learns
    it), else as (number, its Rejected). Numbers are distinct and non-negative (see `IdIndex.earlier`);
    a duplicate's reason says where the first was: `where` and its number ("on line 3", "at position 0")."""
    checked: list[tuple[int, dict | Rejected]] = []
    for number, record in numbered:
        if not isinstance(record, Rejected):
            problem = record_problem(record, id_field)
            if problem is not None:
                record = Rejected(number, problem, usable_id(record, id_field))
        checked.append((number, record))
    good = [(number, record) for number, record in checked if not isinstance(record, Rejected)]
    earlier = index.earlier([record[id_field] for _, record in good], [number for number, _ in good])
    duplicates = {number: Rejected(number, f"duplicate id {record[id_field]!r} (first {where} {first})",
                                   record[id_field])
                  for (number, record), first in zip(good, earlier, strict=True) if first is not None}
    return [(number, duplicates.get(number, record)) for number, record in checked] if duplicates else checked
