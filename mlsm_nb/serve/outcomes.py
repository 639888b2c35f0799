"""Outcomes posted to the scoring service (POST /outcomes), joined to the scores it gave.

A posted record is the record of `mlsm-nb outcomes`: the id, a label column
named by `?label=` (0/1 or true/false, `core.labels`) and `observed_at`
(default: now), checked by the same `audit.outcomes.check_outcome`. Unlike the
file command, which attaches a file whole or not at all, a request's bad
records are refused one by one (position, id, field, reason) and the others
are kept. A second outcome for an (id, label) this server process remembers
(the last `SEEN_KEPT`) is refused; past that, MongoDB's unique (id, label)
index keeps the first. An id this process never scored is kept too (its score
may come from a batch run, another worker, or before a restart) and said in
the answer (`unscored`); it does not count in the live figures.

The live figures: every outcome is joined to the score this process gave its
id (the last `SCORES_KEPT` ids scored are remembered), and each model@version
keeps its last `WINDOW` labelled scores per label (the last `LABELS_KEPT`
labels posted), from which the live page and /metrics show conversion (share
of label 1) and AUC (`audit.metrics.auc`).
With several workers (`shared_dir`: prometheus_client's multiprocess
directory), each worker writes its window and the outcomes it could not join
to `outcomes-<pid>.json` there every `PUBLISH_SECONDS`, joins the others'
unjoined outcomes to its own scores, and the figures are computed over every
worker's window together: an outcome posted to any worker counts.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

import orjson

from ..audit.metrics import auc
from ..audit.outcomes import OutcomeError, check_outcome
from ..core.model import model_key
from ..core.output import is_score
from ..files import atomic_file

SCORES_KEPT = 50_000  # ids whose scores a server process remembers, to join outcomes to them
WINDOW = 1_000  # labelled scores per model@version and label behind the live figures
LABELS_KEPT = 10  # labels with live figures: a new one past it drops the one posted to longest ago
MEMORY_KEPT = 100_000  # outcomes kept in memory when there is no MongoDB (the oldest go first)
SEEN_KEPT = 100_000  # (id, label) pairs remembered to refuse a second outcome
UNJOINED_KEPT = 10_000  # outcomes a worker could not join, offered to the other workers
PUBLISH_SECONDS = 1.0
SOURCE = "POST /outcomes"


class LiveOutcomes:
    """The scores given (by id), the outcomes posted, and the rolling windows of labelled scores."""

    def __init__(self, id_field: str = "id", *, window: int = WINDOW, memory: bool = True,
                 shared_dir: str | None = None, worker: str | None = None):
        self.id_field = id_field
        self.window = window
        self._scores: OrderedDict = OrderedDict()  # (type, id) -> ((model@version, ...), (score, ...))
        self._shapes: dict[tuple, tuple] = {}  # each tuple of model@version keys once, shared by the ids
        self._seen: OrderedDict = OrderedDict()  # (label, type, id) -> None
        self._pairs: dict[tuple[str, str], deque] = {}  # (label, model@version) -> (time, score, value)
        self._labels: OrderedDict = OrderedDict()  # labels with windows, the one posted to last at the end
        self._unjoined: deque = deque(maxlen=UNJOINED_KEPT)  # [label, id, value, time]
        self._taken: OrderedDict = OrderedDict()  # other workers' outcomes joined here
        self.memory: deque | None = deque(maxlen=MEMORY_KEPT) if memory else None
        self.counts = {"accepted": 0, "refused": 0, "unscored": 0, "dropped": 0}
        self._lock = threading.Lock()
        self._dirty = False
        self._shared = Path(shared_dir) if shared_dir else None
        self._read: dict[Path, tuple[tuple, dict]] = {}  # another worker's file -> (its identity, what it holds)
        if self._shared:
            self._own = self._shared / f"outcomes-{worker or os.getpid()}.json"
            threading.Thread(target=self._publish_loop, name="mlsm-serve-outcomes", daemon=True).start()

    def remember_scores(self, documents) -> None:
        """Remember the numeric scores of served result documents, by id (the newest score of an id wins)."""
        shapes, id_field = self._shapes, self.id_field
        with self._lock:
            for document in documents:
                names, scores = [], []
                for name, versions in document["results"].items():
                    for version, entry in versions.items():
                        score = entry.get("score")
                        if is_score(score):
                            names.append(model_key(name, version))
                            scores.append(float(score))
                if scores:
                    shape = tuple(names)
                    record = (type(document[id_field]), document[id_field])
                    self._scores.pop(record, None)
                    self._scores[record] = (shapes.setdefault(shape, shape), tuple(scores))
            while len(self._scores) > SCORES_KEPT:
                self._scores.popitem(last=False)

    def check(self, records: list, label: str) -> tuple[list[dict], list[dict]]:
        """A request's outcome documents and its refused records ({position, id, field, reason}): each
        record checked as `mlsm-nb outcomes` checks a row, then for a second outcome of an (id, label)."""
        accepted, refused, here = [], [], set()
        for position, row in enumerate(records):
            where = f"at position {position}"
            try:
                outcome = check_outcome(row, label, self.id_field, where=where, source=SOURCE)
                record_id = outcome[self.id_field]
                key = (label, type(record_id), record_id)
                if key in here or key in self._seen:
                    raise OutcomeError(f"{where}, id {record_id!r}: already has a {label} outcome "
                                       f"({'earlier in this request' if key in here else 'posted before'}); "
                                       "outcomes are recorded once", record_id, self.id_field)
            except OutcomeError as exc:
                refused.append({"position": position, "id": exc.record_id, "field": exc.field, "reason": str(exc)})
                continue
            here.add(key)
            accepted.append(outcome)
        return accepted, refused

    def accept(self, outcomes: list[dict], refused: int) -> list:
        """Record accepted outcomes (checked by `check`, queued for storing by the caller): remember them,
        keep them in memory when there is no MongoDB, join them to the scores given. Returns the ids that
        have no score here (`unscored`)."""
        now, unscored = time.time(), []
        with self._lock:
            for outcome in outcomes:
                record_id, label = outcome[self.id_field], outcome["label"]
                self._seen[label, type(record_id), record_id] = None
                if not self._join(label, (type(record_id), record_id), outcome["value"], now):
                    unscored.append(record_id)
                    self._unjoined.append([label, record_id, outcome["value"], now])
            while len(self._seen) > SEEN_KEPT:
                self._seen.popitem(last=False)
            if self.memory is not None:
                self.counts["dropped"] += max(0, len(self.memory) + len(outcomes) - MEMORY_KEPT)
                self.memory.extend(outcomes)
            self.counts["accepted"] += len(outcomes)
            self.counts["refused"] += refused
            self.counts["unscored"] += len(unscored)
            self._dirty = True
        return unscored

    def _join(self, label: str, record: tuple, value: int, now: float) -> bool:
        """Pair the scores given to `record` with its outcome (caller holds the lock); False if none."""
        given = self._scores.get(record)
        if given is not None:
            self._labels[label] = None
            self._labels.move_to_end(label)
            if len(self._labels) > LABELS_KEPT:
                dropped, _ = self._labels.popitem(last=False)
                self._pairs = {k: v for k, v in self._pairs.items() if k[0] != dropped}
        for key, score in zip(*given, strict=True) if given is not None else ():
            pairs = self._pairs.get((label, key))
            if pairs is None:
                pairs = self._pairs[label, key] = deque(maxlen=self.window)
            pairs.append((now, score, value))
        return given is not None

    def status(self) -> dict:
        """For /health: what this process accepted, refused and could not join, and (without MongoDB) what
        memory holds."""
        with self._lock:
            out = dict(self.counts)
            if self.memory is not None:
                out.update(kept="memory", held=len(self.memory), limit=MEMORY_KEPT)
            return out

    def figures(self) -> dict:
        """Per model@version and label, over the last `window` labelled scores (every worker's):
        ``{"records", "converted", "conversion", "auc"}``; AUC None while one class only."""
        with self._lock:
            pairs = {key: list(window) for key, window in self._pairs.items()}
        for other in self._others():
            for label, models in other.get("pairs", {}).items():
                for key, window in models.items():
                    pairs.setdefault((label, key), []).extend(tuple(p) for p in window)
        out: dict = {}
        for (label, key), window in sorted(pairs.items()):
            window = sorted(window)[-self.window:] if self._shared else window
            values = [value for _, _, value in window]
            out.setdefault(key, {})[label] = {
                "records": len(values), "converted": sum(values), "conversion": sum(values) / len(values),
                "auc": auc([score for _, score, _ in window], values)}
        return out

    # -- several workers ---------------------------------------------------------------

    def _others(self) -> list[dict]:
        """What the other workers published (none without a shared directory). A file is parsed again only
        when it was replaced: /metrics and the live page ask for the figures at every request."""
        if not self._shared:
            return []
        found, read, before = [], {}, self._read
        for path in self._shared.glob("outcomes-*.json"):
            if path == self._own:
                continue
            try:
                stat = path.stat()
                identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a publish replaces the file
                known = before.get(path)
                held = known[1] if known and known[0] == identity else orjson.loads(path.read_bytes())
            except (OSError, ValueError):  # a worker gone, or one file replaced as it is read
                continue
            read[path] = (identity, held)
            found.append(held)
        # Replaced whole, never changed in place: two threads asking at once at worst both parse a file.
        self._read = read  # the files of workers gone are forgotten
        return found

    def _publish_loop(self) -> None:
        while True:
            time.sleep(PUBLISH_SECONDS)
            try:
                self._publish()
            except Exception:  # noqa: BLE001 - the figures lag; serving goes on
                import logging

                logging.getLogger(__name__).exception("sharing the live outcome figures with other workers failed")

    def _publish(self) -> None:
        """Join the other workers' unjoined outcomes to this worker's scores; write this worker's window."""
        others = self._others()
        with self._lock:
            for label, record_id, value, at in itertools.chain.from_iterable(o.get("unjoined", ()) for o in others):
                taken = (label, type(record_id), record_id)
                if taken not in self._taken and self._join(label, (type(record_id), record_id), value, at):
                    self._taken[taken] = None
                    self._dirty = True
            while len(self._taken) > SEEN_KEPT:
                self._taken.popitem(last=False)
            if not self._dirty:
                return
            shared: dict = {}
            for (label, key), window in self._pairs.items():
                shared.setdefault(label, {})[key] = list(window)
            content = orjson.dumps({"pairs": shared, "unjoined": list(self._unjoined)})
            self._dirty = False
        with atomic_file(self._own, "wb") as f:
            f.write(content)
