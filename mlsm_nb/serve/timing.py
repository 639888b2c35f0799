"""Where a scoring request's time goes: its stages, for the `Server-Timing` header and the metrics.

A scoring handler marks the end of each stage as it goes (`lap`): `parse` (the body, once it has
arrived, into Python values: JSON, and an infer request's binary tensors), `check` (the request's
shape and each record's id and data; a record's field values are checked as each model scores it,
in `score`), `score` (every model in run order, and the result documents), `serialise` (the response
body). A stage that runs twice (the checks of an infer request, then of its records) adds up. Another
part can add a stage it measured itself (`add`, e.g. the time a request waited for a batch, `queue`).
`answer` turns them into the header, with `total` (the handler's whole time, the body's arrival and
what no stage covers included), and observes them in `mlsm_serve_stage_seconds`.
"""

from __future__ import annotations

from time import perf_counter


class Timings:
    """Stage durations (seconds) of one request, in the order the stages first ended."""

    __slots__ = ("stages", "_mark")

    def __init__(self):
        self.stages: dict[str, float] = {}
        self._mark = perf_counter()

    def start(self) -> None:
        """The next stage starts now (what ran since the last mark is nobody's stage)."""
        self._mark = perf_counter()

    def lap(self, stage: str) -> None:
        """`stage` ends now: it took the time since the last mark (added to what it took before)."""
        now = perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self._mark
        self._mark = now

    def add(self, stage: str, seconds: float) -> None:
        """`stage` took `seconds`, measured elsewhere."""
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def lap_first(self, stage: str, seconds: float) -> None:
        """`stage` took the first `seconds` since the last mark, measured elsewhere (e.g. `queue`, the wait
        for a batch): the next lap gets the rest."""
        self.add(stage, seconds)
        self._mark += seconds

    def header(self, total: float) -> str:
        """The `Server-Timing` value: `parse;dur=0.052, ..., total;dur=1.234` (milliseconds)."""
        return ", ".join(f"{stage};dur={seconds * 1e3:.3f}" for stage, seconds in (*self.stages.items(),
                                                                                   ("total", total)))
