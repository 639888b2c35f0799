"""Sample inputs that look like records, made from field specs: for sample runs and the try-out forms.

`generate_inputs` (in `fields`) hunts for edge cases (robustness); these are
ordinary records instead: `allowed` values, numbers inside `min`/`max` and on
the scale of the examples' values, strings taken from the examples (or made of
the field's name, never random characters), None and absent fields now and
then where the spec allows. A field that several models read passes every one
of their specs, so a sample made from a folder's notebooks suits them all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence

from .fields import FieldSpec, explain

_NONE_SHARE = 0.05  # of values of a nullable field
_ABSENT_SHARE = 0.1  # of values of a field no model requires
_EXAMPLE_SHARE = 0.5  # of values drawn from the examples, when they give some


def _passes(specs: Sequence[FieldSpec], value) -> bool:
    return all(explain(spec, {spec.name: value}) is None for spec in specs)


def _number(specs: Sequence[FieldSpec], seen: Sequence, rng: random.Random):
    lows = [s.min for s in specs if s.min is not None]
    highs = [s.max for s in specs if s.max is not None]
    scale = max([abs(v) for v in seen if isinstance(v, (int, float))] + [10]) * 2
    low = max(lows) if lows else (0 if all(v >= 0 for v in seen if isinstance(v, (int, float))) else -scale)
    high = min(highs) if highs else low + scale
    if all(s.type == "int" for s in specs):
        low, high = math.ceil(low), math.floor(high)
        return rng.randint(low, high) if low <= high else low
    return round(rng.uniform(low, high), 3)


def _value(specs: Sequence[FieldSpec], seen: Sequence, rng: random.Random):
    first = specs[0]
    if all(s.nullable for s in specs) and rng.random() < _NONE_SHARE:
        return None
    allowed = [v for v in first.allowed or () if _passes(specs, v)]
    if allowed:
        return rng.choice(allowed)
    if seen and (first.type == "str" or rng.random() < _EXAMPLE_SHARE):
        return rng.choice(seen)
    if first.type in ("int", "float"):
        return _number(specs, seen, rng)
    if first.type == "str":
        return f"{first.name.replace('_', ' ')} {rng.randint(1, 20)}"
    return rng.random() < 0.5


def _candidates(specs: Sequence[FieldSpec]) -> list:
    """Values worth trying when the specs of one field disagree: their bounds and allowed values."""
    found = [v for s in specs for v in (s.min, s.max, *(s.allowed or ())) if v is not None]
    return found + [math.ceil(v) for v in found if isinstance(v, float)] + [0, "", False]


def sample_inputs(specs: Iterable[FieldSpec], count: int, seed: int = 0,
                  examples: Iterable[Mapping] = ()) -> list[dict]:
    """`count` flat inputs for these specs (several specs may name one field: its values pass them all).

    `examples` are inputs the authors wrote (their `examples`' `data`): their values are reused and set
    the scale of numbers without bounds. The same seed gives the same inputs.
    """
    by_name: dict[str, list[FieldSpec]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec)
    examples = [e for e in examples if isinstance(e, Mapping)]
    seen = {name: [e[name] for e in examples if name in e and e[name] is not None and _passes(group, e[name])]
            for name, group in by_name.items()}
    rng = random.Random(seed)
    inputs = []
    for _ in range(count):
        data = {}
        for name, group in by_name.items():
            if not any(s.required for s in group) and rng.random() < _ABSENT_SHARE:
                continue
            value = _value(group, seen[name], rng)
            if not _passes(group, value):  # specs that pull apart: any value they all accept
                value = next((v for v in _candidates(group) if _passes(group, v)), value)
            data[name] = value
        inputs.append(data)
    return inputs


def sample_records(specs: Iterable[FieldSpec], count: int, seed: int = 0, examples: Iterable[Mapping] = (),
                   id_field: str = "id") -> list[dict]:
    """`sample_inputs` as records in the batch format: ``{id_field: "sample-<seed>-<n>", "data": {...}}``."""
    return [{id_field: f"sample-{seed}-{i:07d}", "data": data}
            for i, data in enumerate(sample_inputs(specs, count, seed, examples))]
