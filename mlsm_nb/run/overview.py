"""The overview an executed notebook shows of its batch: counts, errors by kind, the score's
distribution (a table and a histogram) and a sample of the entries.

Drawn without pandas and matplotlib: the overview cell runs once per execution,
each in a new kernel, where importing them only for it cost about 0.7 s of CPU,
a third of a small execution (bench/run_engines.py). Tables are HTML for
notebook viewers and text for everything else; every value is escaped.
"""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Sequence
from html import escape

from ..core.batch import BatchOutcome
from ..core.output import REASONS_KEY, is_score, reasons_text
from ..core.stats import score_stats
from .merge import Tally, entry_scores

SAMPLE_SIZE = 5
FACTS = "application/vnd.mlsm-nb.facts+json"  # the error count and slowest records, for the engine that ran it


class BatchOverview:
    """A reader's view of one scored batch: counts, errors by kind, the slowest records, score distribution,
    sample. `slowest` and `stuck` are [[record id, seconds], ...]: the batch's slowest records, and those
    stuck where no interrupt reached them in an earlier kernel (see `core.timelimit`)."""

    def __init__(self, outcome: BatchOutcome, slowest: Sequence = (), stuck: Sequence = (),
                 ids: Sequence | None = None):
        # What `show` needs, not the batch's entries: they are in the output file, and a kernel that kept
        # them until it exits would have every full collection go over them (IPython runs one as it exits).
        self.model, self.version, self.method, self.notes = (outcome.model, outcome.version, outcome.method,
                                                             outcome.notes)
        self.sample = outcome.entries[:SAMPLE_SIZE]
        self.slowest = [list(pair) for pair in slowest]
        self.stuck = [list(pair) for pair in stuck]
        self.has_ids = ids is not None
        scores = entry_scores(outcome.entries)
        self.tally = Tally.of(outcome.entries, ids if ids is not None else [None] * len(scores), scores)
        self.scores = [score for score in scores if is_score(score)]

    def facts(self) -> dict:
        """What the engine reads back from the executed notebook (the `FACTS` output of `show`): the entries'
        error count and, given the records' ids, their counts as the merge makes them (`merge.Tally`): the
        runner need not read the entries to count them; the slowest and stuck records."""
        facts = {"errors": self.tally.error_count, "slowest": self.slowest, "stuck": self.stuck}
        if self.has_ids:
            facts["tally"] = self.tally.as_dict()
        return facts

    def show(self) -> None:
        """Display the overview (tables and a histogram) in the notebook."""
        from IPython.display import Markdown, display

        from ..histogram import score_histogram

        errors = self.tally.errors
        display(Markdown(
            f"### {self.model} {self.version}: {self.tally.records} records, "
            f"{sum(errors.values())} errors (scored with `{self.method}`)"
            + "".join(f"\n\n> {note}" for note in self.notes)))
        if errors:
            display(table(["error kind", "records"], sorted(errors.items())), raw=True)
        if self.stuck:
            display(Markdown("> stuck past the per-record limit where no interrupt reached them (their kernel "
                             "was replaced), so given their timeout unscored: "
                             + ", ".join(f"`{_text(i)}`" for i, _ in self.stuck)))
        if self.slowest:
            rows = [[_text(record_id), seconds] for record_id, seconds in self.slowest]
            timing = table(["record id", "seconds"], rows, index=["slowest"] + [""] * (len(rows) - 1))
        else:
            timing = {"text/plain": "(scored as a whole frame: no record timed on its own)"}
        display({**timing, FACTS: self.facts()}, raw=True)
        scores = self.scores
        if scores:
            stats = describe(scores)
            display(table(list(stats), [list(stats.values())], index=["score"]), raw=True)
            svg, alt = score_histogram(scores), "histogram of the batch's scores"
            # JupyterLab shows no SVG of an untrusted notebook (every executed notebook a reviewer opens),
            # but shows HTML's images: the same SVG as a data: URI.
            uri = f"data:image/svg+xml;base64,{b64encode(svg.encode()).decode()}"
            display({"image/svg+xml": svg, "text/plain": f"<{alt}>", "text/html": f'<img alt="{alt}" src="{uri}">'},
                    raw=True, metadata={"image/svg+xml": {"alt": alt}})
        sample = self.sample
        columns = list(dict.fromkeys(key for entry in sample for key in entry))
        display(table(columns, [[_cell(entry, c) for c in columns] for entry in sample]), raw=True)


def _cell(entry: dict, key: str):
    """An entry's value in the sample table; `_reasons` (a stored entry's: valid) as one line."""
    value = entry.get(key, "")
    return reasons_text(value) if key == REASONS_KEY else value


def describe(scores: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, std, min, quartiles and max rounded to 4 places, named as pandas' `describe` names
    them (the report's `score_stats`, which computes them as pandas does)."""
    stats = score_stats(scores, (0.25, 0.5, 0.75))
    named = {{"p25": "25%", "p50": "50%", "p75": "75%"}.get(k, k): v for k, v in stats.items()}
    return {k: v if v is None or k == "count" else round(v, 4) for k, v in named.items()}


def table(columns: Sequence[str], rows: Sequence[Sequence], index: Sequence | None = None) -> dict[str, str]:
    """A table as a display bundle: HTML and plain text. Row labels are `index` (default: 0, 1, ...)."""
    index = list(range(len(rows))) if index is None else index
    cells = [[_text(label), *map(_text, row)] for label, row in zip(index, rows, strict=True)]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr><th>" + escape(row[0]) + "</th>" + "".join(f"<td>{escape(v)}</td>" for v in row[1:])
                   + "</tr>" for row in cells)
    html = f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"
    grid = [["", *map(str, columns)], *cells]
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    plain = "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=False)).rstrip() for row in grid)
    return {"text/html": html, "text/plain": plain}


def _text(value) -> str:
    """A cell's text: strings as they are, other JSON values as JSON, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, ensure_ascii=False, default=str)
