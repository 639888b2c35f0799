"""The last scores per model and error counts, for the live page."""

from __future__ import annotations

import threading
from collections import Counter, deque

from ..core.model import model_key

RECENT = 200


class RecentScores:
    """A bounded window of recent numeric scores and all-time error counts, per model@version."""

    def __init__(self, size: int = RECENT):
        self.size = size
        self._scores: dict[str, deque] = {}
        self._errors: dict[str, Counter] = {}
        self._records: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, outcomes, timestamp: float) -> None:
        """Count one request's scoring (a BatchOutcome per model) and keep its last numeric `score`s."""
        with self._lock:
            for outcome in outcomes:
                key = model_key(outcome.model, outcome.version)
                self._records[key] += len(outcome.entries)
                errors = outcome.error_counts()
                if errors:
                    self._errors.setdefault(key, Counter()).update(errors)
                window = self._scores.setdefault(key, deque(maxlen=self.size))
                for entry in outcome.entries[-self.size:]:
                    score = entry.get("score")
                    if type(score) in (int, float) and score == score:
                        window.append((timestamp, score))

    def snapshot(self) -> dict:
        """JSON-ready: per model@version its recent [time, score] pairs, records and errors by kind."""
        with self._lock:
            keys = sorted(set(self._records) | set(self._scores))
            return {key: {"records": self._records[key], "scores": [list(p) for p in self._scores.get(key, ())],
                          "errors": dict(self._errors.get(key, {}))} for key in keys}
