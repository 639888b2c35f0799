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

Reasons (`REASONS_KEY`, optional): a model says why a record scored as it did with a `_reasons` entry, a
list of at most `MAX_REASONS` items ``{"field": <input name>, "contribution": <number>}``, the inputs
that moved the score most, largest |contribution| first (ties in any order), each field at most once;
nothing else in an item. The contribution is in the model's own units (a logistic regression's
weight x value, in log-odds), positive when it raised the score. An empty list says no input moved it.
`reasons_problem` is that definition: a `_reasons` that breaks it makes the record's entry `bad_output`
naming the item and key, like any output JSON cannot hold. `top_reasons` builds a valid list from a
model's contributions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


REASONS_KEY = "_reasons"
MAX_REASONS = 10  # items in `_reasons`: a short list, for a person to read
_REASON_KEYS = ("field", "contribution")
_INT_LIMIT = 2 ** 53  # integers a float holds exactly; larger ones take the slow path, which says what it finds


def _number(value: Any) -> float | None:
    """`value` as a finite float when it is a number (not a boolean; numpy's too), else None."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float
        return None
    return number if math.isfinite(number) else None


def _reason_problem(item: Any, where: str, seen: set) -> str | None:
    if not isinstance(item, Mapping):
        return f"{where} is {type(item).__name__}, expected a dict {{'field': ..., 'contribution': ...}}"
    for key in _REASON_KEYS:
        if key not in item:
            return f"{where} has no {key!r}"
    extra = [k for k in item if k not in _REASON_KEYS]
    if extra:
        return f"{where} has {extra[0]!r}: an item holds only 'field' and 'contribution'"
    field, contribution = item["field"], item["contribution"]
    if not isinstance(field, str) or not field:
        return f"{where}['field'] is {field!r}, expected the name of an input (a non-empty string)"
    if field in seen:
        return f"{where}['field'] is {field!r} again: each field at most once"
    seen.add(field)
    if _number(contribution) is None:
        return (f"{where}['contribution'] is {contribution!r} ({type(contribution).__name__}), expected a finite "
                "number")
    return None


def _plainly_valid(reasons: Any) -> bool:
    """Whether `reasons` is a valid `_reasons` made of plain lists, dicts, strings and numbers: the case of
    nearly every record, decided here without the walk that words a problem (a record's `_reasons` is
    checked once per model; serve's throughput notices)."""
    if type(reasons) is not list or len(reasons) > MAX_REASONS:
        return False
    previous, seen = math.inf, []
    for item in reasons:
        if type(item) is not dict or len(item) != 2:
            return False
        field, contribution = item.get("field"), item.get("contribution")
        if type(field) is not str or not field or field in seen:
            return False
        if type(contribution) is float:
            size = contribution if contribution >= 0 else -contribution
            if not size <= previous or size == math.inf:  # NaN compares false
                return False
        elif type(contribution) is int and -_INT_LIMIT < contribution < _INT_LIMIT:
            size = contribution if contribution >= 0 else -contribution
            if size > previous:
                return False
        else:
            return False
        seen.append(field)
        previous = size
    return True


def reasons_problem(reasons: Any) -> str | None:
    """Why `reasons` is not a valid `_reasons` (see the module docstring), or None."""
    return None if _plainly_valid(reasons) else _walk_reasons(reasons)


def _walk_reasons(reasons: Any) -> str | None:
    """`reasons_problem` item by item, for any types (tuples, mappings, numpy numbers), wording the first problem."""
    if not isinstance(reasons, (list, tuple)):
        return (f"{REASONS_KEY} is {type(reasons).__name__}, expected a list of "
                "{'field': ..., 'contribution': ...}")
    if len(reasons) > MAX_REASONS:
        return (f"{REASONS_KEY} has {len(reasons)} items, at most {MAX_REASONS}: give the inputs that moved the "
                "score most")
    seen: set = set()
    previous = math.inf
    for i, item in enumerate(reasons):
        where = f"{REASONS_KEY}[{i}]"
        problem = _reason_problem(item, where, seen)
        if problem is not None:
            return problem
        size = abs(_number(item["contribution"]))
        if size > previous:
            return (f"{where}['contribution'] is larger (in absolute value) than the item before it: order "
                    "reasons by |contribution|, largest first")
        previous = size
    return None


def top_reasons(contributions: Mapping[str, float], top: int = 3) -> list[dict]:
    """A valid `_reasons` from each input's contribution to the score: the `top` largest by absolute value
    (at most `MAX_REASONS`), largest first (ties in the order given), zeros left out.

    ``top_reasons({"site_visits": 0.8, "days_since_last_activity": -1.2, "email_clicks": 0.0})`` ->
    ``[{"field": "days_since_last_activity", "contribution": -1.2}, {"field": "site_visits", "contribution": 0.8}]``
    """
    ranked = sorted(((field, float(c)) for field, c in contributions.items() if c), key=lambda item: -abs(item[1]))
    return [{"field": field, "contribution": c} for field, c in ranked[:max(0, min(top, MAX_REASONS))]]


def reason_text(item: Mapping) -> str:
    """One valid reason as people read it: ``company_size +1.36``."""
    return f"{item['field']} {_number(item['contribution']):+.3g}"


def reasons_text(reasons: Sequence[Mapping]) -> str:
    """A valid `_reasons` as one line: ``company_size +1.36, trial_signup +1.33`` ("none" when empty)."""
    return ", ".join(map(reason_text, reasons)) or "none"


def error_entry(kind: str, message: str) -> dict:
    """The result entry of a model that failed on a record."""
    return {"_error": message, "_error_kind": kind}


def is_score(value: Any) -> bool:
    """Whether an entry's `score` counts as a score (in run counts, summaries, reports, metrics): a number,
    not a boolean, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _encoded(out: Mapping) -> tuple[bytes | None, str | None]:
    """(`out` as JSON, None), or (None, why it is not a valid output: a `_reasons` that is not one
    (`reasons_problem`), or a value JSON cannot hold)."""
    if REASONS_KEY in out:
        problem = reasons_problem(out[REASONS_KEY])
        if problem is not None:
            return None, problem
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
    """Why `out` (a result entry, or what `score` returned) is not a valid output (see `_encoded`), or None."""
    return _encoded(out)[1]


def encoded_entry(entry: dict) -> tuple[dict, bytes]:
    """`entry` as a run stores it (itself, or that record's `bad_output` naming why it is not valid) and
    its JSON: checking an entry is encoding it, so a file engine writes these bytes without encoding again."""
    encoded, problem = _encoded(entry)
    if problem is None:
        return entry, encoded
    failed = error_entry("bad_output", problem)
    return failed, dumps(failed)


def stored_entry(entry: dict) -> dict:
    """`entry` as a run stores it: itself, or that record's `bad_output` naming why it is not valid."""
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
