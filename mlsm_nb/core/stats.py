"""Statistics of scores that a run's executed notebooks, the report and the audit share.

Computed as pandas computes them (`describe`), without pandas: an executed
notebook's summary would otherwise import it into every kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PSI_THRESHOLD = 0.2  # the usual "significant shift" line; 0.1-0.2 is "some shift"


def quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def score_stats(scores: Sequence[float], quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9)) -> dict:
    """count, mean, std (n - 1, as pandas; None for one score), min, the quantiles (`p10`, ...) and max;
    beyond the float range (scores near 1e308), infinity, as pandas. Empty: {}."""
    if not scores:
        return {}
    ordered, count = sorted(scores), len(scores)
    mean = _total(ordered) / count
    std = math.sqrt(_total([(s - mean) * (s - mean) for s in ordered]) / (count - 1)) if count > 1 else None
    stats = {"count": count, "mean": mean, "std": std, "min": ordered[0]}
    stats.update({f"p{round(q * 100)}": quantile(ordered, q) for q in quantiles})
    stats["max"] = ordered[-1]
    return stats


def _total(values: list[float]) -> float:
    try:
        return math.fsum(values)  # exact
    except OverflowError:  # a partial sum beyond the float range
        return sum(values)


def psi(expected: list[float], actual: list[float], bins: int = 10) -> float | None:
    """Population stability index of `actual` against `expected`, on `expected`'s quantile bins."""
    if not expected or not actual:
        return None
    ordered = sorted(expected)
    edges = sorted({quantile(ordered, i / bins) for i in range(1, bins)})

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for value in values:
            low, high = 0, len(edges)
            while low < high:  # bisect: first edge >= value
                mid = (low + high) // 2
                if edges[mid] < value:
                    low = mid + 1
                else:
                    high = mid
            counts[low] += 1
        return [max(c / len(values), 1e-4) for c in counts]  # floor keeps empty bins finite

    return sum((a - e) * math.log(a / e) for e, a in zip(shares(expected), shares(actual), strict=True))
