"""Check a model's output for one record: it must be storable as JSON, as results are.

Checked by `score_batch` for each entry of a batch (the results both run
engines write), and available to anything else that stores results
(`output_problem`), so a value JSON cannot hold (a
`Decimal`, a `timedelta`, a `complex`, an integer beyond 64 bits, a tuple key,
nesting deeper than 254 levels) or a NaN/Infinity (which JSON would store as
`null`) is that record's `bad_output`, never its batch's failure.
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


def is_score(value: Any) -> bool:
    """Whether an entry's `score` counts as a score (in run counts, summaries, reports, metrics): a number,
    not a boolean, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def output_problem(out: Mapping) -> str | None:
    """Why `out` (a result entry, or what `score` returned) cannot be stored as JSON, or None."""
    try:
        encoded = dumps(out)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return f"score returned a value JSON cannot hold: {exc}"
    if b"null" in encoded:  # NaN and Infinity encode as null; only then is the walk worth it
        where = _not_finite(out, "output")
        if where is not None:
            return f"score returned a number JSON cannot hold: {where}"
    return None
