"""What a valid output is: the one definition every check and both run engines use.

An entry (what `score` returned, plus `_status`) must be storable as JSON, as
results are: a value JSON cannot hold (a `Decimal`, a `timedelta`, a
`complex`, an integer beyond 64 bits, a tuple key, nesting deeper than 254
levels) or a NaN/Infinity (which JSON would store as `null`) makes it that
record's `bad_output` (`stored_entry`), never its batch's failure. The run
engines (`score_batch`), `Model.test()`, `Model.score()` and validate's
robustness, examples and parity checks all decide it here, so a notebook that
validates does not then fail records in a run for its outputs.

A `score` output that is not a number is stored, but counts as no score
(`is_score`): validate warns about it (`score_warning`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from ..files import dumps


def _not_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or Infinity in `value`, or None."""
    if isinstance(value, float) or type(value).__module__ == "numpy":
        value = value.tolist() if hasattr(value, "tolist") else value
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value}"
    if isinstance(value, Mapping):
        return next((p for k, v in value.items() if (p := _not_finite(v, f"{path}[{k!r}]"))), None)
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := _not_finite(v, f"{path}[{i}]"))), None)
    return None


def error_entry(kind: str, message: str) -> dict:
    """The result entry of a model that failed on a record."""
    return {"_error": message, "_error_kind": kind}


def is_score(value: Any) -> bool:
    """Whether an entry's `score` counts as a score (in run counts, summaries, reports, metrics): a number,
    not a boolean, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _encoded(out: Mapping) -> tuple[bytes | None, str | None]:
    """(`out` as JSON, None), or (None, why JSON cannot hold it)."""
    try:
        encoded = dumps(out)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return None, f"score returned a value JSON cannot hold: {exc}"
    if b"null" in encoded:  # NaN and Infinity encode as null; only then is the walk worth it
        where = _not_finite(out, "output")
        if where is not None:
            return None, f"score returned a number JSON cannot hold: {where}"
    return encoded, None


def output_problem(out: Mapping) -> str | None:
    """Why `out` (a result entry, or what `score` returned) cannot be stored as JSON, or None."""
    return _encoded(out)[1]


def encoded_entry(entry: dict) -> tuple[dict, bytes]:
    """`entry` as a run stores it (itself, or that record's `bad_output` naming why JSON cannot hold it) and
    its JSON: checking an entry is encoding it, so a file engine writes these bytes without encoding again."""
    encoded, problem = _encoded(entry)
    if problem is None:
        return entry, encoded
    failed = error_entry("bad_output", problem)
    return failed, dumps(failed)


def stored_entry(entry: dict) -> dict:
    """`entry` as a run stores it: itself, or that record's `bad_output` naming why JSON cannot hold it."""
    return encoded_entry(entry)[0]


def score_warning(out: Mapping) -> str | None:
    """Why the `score` in `out` will not count as a score (run counts, summaries, reports), or None
    (also when there is no `score`)."""
    if "score" not in out:
        return None
    value = out["score"]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if is_score(value):
        return None
    return (f"`score` is {value!r} ({type(value).__name__}), not a number: runs store it, but run counts, "
            "summaries and reports leave it out; return a float")
