"""The score histogram as an SVG document, for executed notebooks (drawn in each kernel) and the report.

Written directly, not with matplotlib (see `score_histogram`); a leaf module, so
that the run (inside every kernel) and the report can both take it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLOR = "#3b6ea5"


def score_histogram(scores: Sequence[float], *, bins: int = 30, size: tuple[int, int] = (400, 176),
                    title: str | None = None) -> str:
    """A histogram of scores as an SVG document (`size` in pixels).

    Written directly, not with matplotlib: an executed notebook draws one per
    execution, in a kernel that would otherwise import matplotlib for it (about
    0.4 s of CPU each). Presentation attributes only (no `style`), so it shows
    under a Content-Security-Policy without 'unsafe-inline'.
    """
    counts, lo, hi = _bin(scores, bins)
    width, height = size
    left, right, top, bottom = 46, 12, 24 if title else 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    y_ticks = _ticks(0, max(counts, default=0) or 1)
    y_max = max(y_ticks[-1], 1)

    def x(value: float) -> float:
        return round(left + _share(value, lo, hi) * plot_w, 2)

    def y(count: float) -> float:
        return round(top + plot_h - count / y_max * plot_h, 2)

    bar = plot_w / len(counts)
    outline = [f"M{left},{y(0)}"]
    for i, count in enumerate(counts):
        outline.append(f"L{round(left + i * bar, 2)},{y(count)} L{round(left + (i + 1) * bar, 2)},{y(count)}")
    outline.append(f"L{left + plot_w},{y(0)} Z")
    label = escape(title or "histogram of scores")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" font-family="sans-serif" '
             f'font-size="11" fill="#333">',
             f"<title>{label}</title>",
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    if title:
        parts.append(f'<text x="{left + plot_w / 2}" y="15" text-anchor="middle" font-size="13">{escape(title)}</text>')
    for tick, text in zip(y_ticks, _labels(y_ticks), strict=True):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick)}" y2="{y(tick)}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 5}" y="{y(tick) + 4}" text-anchor="end">{text}</text>')
    parts.append(f'<path d="{" ".join(outline)}" fill="{COLOR}"/>')
    x_ticks = [tick for tick in _ticks(lo, hi) if lo <= tick <= hi]
    for tick, text in zip(x_ticks, _labels(x_ticks), strict=True):
        parts.append(f'<line x1="{x(tick)}" x2="{x(tick)}" y1="{top + plot_h}" y2="{top + plot_h + 4}" '
                     f'stroke="#333"/><text x="{x(tick)}" y="{top + plot_h + 15}" text-anchor="middle">{text}</text>')
    parts.append(f'<path d="M{left},{top} V{top + plot_h} H{left + plot_w}" fill="none" stroke="#333"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">score</text>'
                 f'<text transform="translate(11 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">records</text>'
                 "</svg>")
    return "".join(parts)


def _bin(scores: Sequence[float], bins: int) -> tuple[list[int], float, float]:
    """Counts of `bins` equal bins over the scores' range (the last includes its right edge), and the range;
    one value only gets the range value ± 0.5, as numpy's histogram does."""
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        if lo == hi:  # beyond 2**53, ± 0.5 is lost: the next floats instead
            lo, hi = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
    counts, last, lo_half, width = [0] * bins, bins - 1, lo / 2, hi / 2 - lo / 2
    for score in scores:  # `_share(score, lo, hi) * bins` inlined: once per record of every execution
        counts[min(int((score / 2 - lo_half) / width * bins), last)] += 1
    return counts, lo, hi


def _share(value: float, lo: float, hi: float) -> float:
    """Where `value` lies between `lo` (0) and `hi` (1); in halves, so that no difference overflows."""
    return (value / 2 - lo / 2) / (hi / 2 - lo / 2)


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    raw = hi / target - lo / target  # not (hi - lo) / target, which may overflow
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step)
    return [(first + i) * step for i in range(math.ceil(hi / step) - first + 1)]


def _labels(ticks: Sequence[float]) -> list[str]:
    """The ticks' labels, short (0.25, 4000, 20k, 1.5M, 2e+12) but with the digits that tell them apart."""
    for digits in range(3, 18):
        labels = [_label(tick, digits) for tick in ticks]
        if len(set(labels)) == len(labels):
            break
    return labels


def _label(value: float, digits: int) -> str:
    for low, high, unit, suffix in ((1e4, 1e6, 1e3, "k"), (1e6, 1e9, 1e6, "M")):
        if low <= abs(value) < high:
            return f"{value / unit:.{digits}g}{suffix}"
    return f"{value:.{digits + 1}g}"
