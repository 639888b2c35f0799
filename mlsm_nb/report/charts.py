"""The report's PNG figures, drawn with matplotlib (the score histogram is SVG: `mlsm_nb.histogram`).

Figures are made with `matplotlib.figure.Figure`, not pyplot: nothing global
(pyplot's figure list, the session's backend) changes, which matters in threads,
and it is about twice as fast.
"""

from __future__ import annotations

import io

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
