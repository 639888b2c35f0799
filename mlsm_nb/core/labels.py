"""What counts as an outcome label (did the lead convert?): one rule for every place labels arrive.

A label is 0 or 1: the integers 0 and 1, the booleans, or their text ("0",
"1", "true", "false", in any case, spaces around ignored). Nothing else is
read as one: not 1.0, "1.0" or "1e0" (a number that only equals 1 may be a
score or a share sent by mistake), not "yes" or 2.
"""

from __future__ import annotations

from typing import Any

from ..files import to_native

_TEXT = {"1": 1, "true": 1, "0": 0, "false": 0}


def label_value(value: Any) -> int | None:
    """0 or 1 for a label (see the module docstring); None for anything else."""
    value = to_native(value)
    if type(value) is bool:
        return int(value)
    if type(value) is int:
        return value if value in (0, 1) else None
    if isinstance(value, str):
        return _TEXT.get(value.strip().lower())
    return None
