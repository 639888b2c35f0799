"""The PNG charts of executed notebooks, reports and audit pages, drawn with matplotlib.

Figures are made with `matplotlib.figure.Figure`, not pyplot: nothing global
(pyplot's figure list, the session's backend) changes, which matters inside a
notebook's kernel and in threads, and it is about twice as fast.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

COLOR = "#3b6ea5"
DPI = 80


def figure(width: float, height: float):
    """A new figure with one set of axes: (figure, axes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def to_png(fig) -> bytes:
    """The figure as PNG bytes, laid out tight."""
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    return png.getvalue()


def score_histogram(scores: Sequence[float], *, bins: int = 30, size: tuple[float, float] = (5, 2.2),
                    title: str | None = None) -> bytes:
    """A histogram of scores as PNG bytes."""
    import numpy as np

    counts, edges = np.histogram(scores, bins=bins)
    fig, ax = figure(*size)
    ax.stairs(counts, edges, fill=True, color=COLOR)
    if title:
        ax.set_title(title)
    ax.set_xlabel("score")
    ax.set_ylabel("records")
    return to_png(fig)
