"""The last scores per model and error counts, for the live page."""

from __future__ import annotations

import threading
from collections import Counter, deque

RECENT = 200


class RecentScores:
    """A bounded window of recent numeric scores and all-time error counts, per model@version."""

    def __init__(self, size: int = RECENT):
        self.size = size
        self._scores: dict[str, deque] = {}
        self._errors: dict[str, Counter] = {}
        self._records: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, documents, timestamp: float) -> None:
        """Take the `score` (and error kind) of every model's entry of the result documents."""
        with self._lock:
            for document in documents:
                for name, versions in document["results"].items():
                    for version, entry in versions.items():
                        key = f"{name}@{version}"
                        self._records[key] += 1
                        kind = entry.get("_error_kind")
                        if kind:
                            self._errors.setdefault(key, Counter())[kind] += 1
                            continue
                        score = entry.get("score")
                        if isinstance(score, (int, float)) and not isinstance(score, bool) and score == score:
                            self._scores.setdefault(key, deque(maxlen=self.size)).append((timestamp, score))

    def snapshot(self) -> dict:
        """JSON-ready: per model@version its recent [time, score] pairs, records and errors by kind."""
        with self._lock:
            keys = sorted(set(self._records) | set(self._scores))
            return {key: {"records": self._records[key], "scores": [list(p) for p in self._scores.get(key, ())],
                          "errors": dict(self._errors.get(key, {}))} for key in keys}
