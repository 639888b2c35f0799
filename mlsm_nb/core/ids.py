"""The record ids an input has shown so far, and where each first appeared: about 24 bytes an id.

A dict of the ids themselves costs about 120 bytes an id (some 115 MiB for a
million records), so a reader's memory would grow with its input. This index
keeps a 128-bit BLAKE2b digest of each id, typed so that `1` and `"1"`
differ, in sorted numpy runs, merged as they grow (a log-structured set).
Two different ids share a digest with probability about n²/2¹²⁹, about
10⁻²¹ for a billion ids: a digest stands for its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import numpy as np

_PARTS = 16  # the index is cut in parts by digest so that merging one never copies much of it
_PART_SHIFT = np.uint64(64 - (_PARTS - 1).bit_length())  # a digest's part: the top bits of its first half
assert _PARTS & (_PARTS - 1) == 0, "_PARTS must be a power of two"


def _digest(record_id: Any) -> bytes:
    # str.encode and int.__repr__, not the id's own methods: a subclass's text is its value
    text = b"s" + str.encode(record_id, "utf-8", "surrogatepass") if isinstance(record_id, str) \
        else b"i" + int.__repr__(record_id).encode()
    return blake2b(text, digest_size=16).digest()


class IdIndex:
    """Ids seen so far (each a str or an int, see `core.records.id_problem`) and the position each first had."""

    def __init__(self) -> None:
        self._parts = [_SortedRuns() for _ in range(_PARTS)]

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def earlier(self, ids: Sequence[Any], positions: Sequence[int]) -> list[int | None]:
        """For each id (at its position, in input order), the position where it appeared first, in this call
        or an earlier one, when that is not its own (a duplicate); None for a new id. Learns the new ids.
        Positions are distinct and non-negative over all calls (line numbers, say)."""
        digests = [_digest(record_id) for record_id in ids]
        first: dict[bytes, int] = {}
        for digest, position in zip(digests, positions, strict=False):  # positions may run on (a count)
            first.setdefault(digest, position)
        if first:
            halves = np.frombuffer(b"".join(first), dtype=np.uint64).reshape(-1, 2)
            high, low = np.ascontiguousarray(halves[:, 0]), np.ascontiguousarray(halves[:, 1])
            firsts = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            known = np.full(len(high), -1, dtype=np.int64)
            part_of = (high >> _PART_SHIFT).astype(np.intp)
            by_part = np.argsort(part_of, kind="stable")
            bounds = np.searchsorted(part_of[by_part], np.arange(_PARTS + 1))
            for number in np.flatnonzero(np.diff(bounds)):  # only the parts these ids fall in
                part, mine = self._parts[number], by_part[bounds[number]:bounds[number + 1]]
                known[mine] = part.lookup(high[mine], low[mine])
                new = mine[known[mine] < 0]
                part.add(high[new], low[new], firsts[new])
            for digest, position in zip(first, known.tolist(), strict=True):
                if position >= 0:
                    first[digest] = position
        return [None if first[digest] == position else first[digest]
                for digest, position in zip(digests, positions, strict=False)]


class RequestIds:
    """`IdIndex.earlier` for ids that are in memory anyway (one request's): a dict of the ids, no digests and
    no numpy, which would cost a one-record request more than scoring it. Typed as `IdIndex` types them
    (`1` and `"1"` differ; a subclass's value is its base type's)."""

    def __init__(self) -> None:
        self._first: dict[tuple[bool, Any], int] = {}

    def earlier(self, ids: Sequence[Any], positions: Sequence[int]) -> list[int | None]:
        """As `IdIndex.earlier`."""
        found = []
        for record_id, position in zip(ids, positions, strict=False):
            key = (True, str.__str__(record_id)) if isinstance(record_id, str) else (False, int.__int__(record_id))
            first = self._first.setdefault(key, position)
            found.append(None if first == position else first)
        return found


class _SortedRuns:
    """A set of 128-bit digests (two 64-bit halves) with a position each, as runs sorted by the first half
    and merged as they grow (a log-structured set). Searching 64-bit integers is several times faster than
    searching 16-byte strings; digests that share a first half (about n²/2⁶⁵) sit side by side in a run."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (high, low, position), largest first

    def __len__(self) -> int:
        return sum(len(high) for high, _, _ in self._runs)

    def lookup(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """The position of each digest, -1 for a digest not in the set."""
        found = np.full(len(high), -1, dtype=np.int64)
        for run_high, run_low, run_positions in self._runs:
            at = np.searchsorted(run_high, high)
            pending = np.arange(len(high))
            while len(pending):  # one round, unless a first half is shared: then the next entries too
                pending = pending[at[pending] < len(run_high)]
                pending = pending[run_high[at[pending]] == high[pending]]
                match = run_low[at[pending]] == low[pending]
                found[pending[match]] = run_positions[at[pending[match]]]
                pending = pending[~match]
                at[pending] += 1
        return found

    def add(self, high: np.ndarray, low: np.ndarray, positions: np.ndarray) -> None:
        """Add new digests (none already in the set) with their positions."""
        if not len(high):
            return
        order = np.argsort(high)
        self._runs.append((high[order], low[order], positions[order]))
        # Merge while the newest run is at least half its predecessor: O(log n) runs, each digest merged
        # O(log n) times; a merge copies one part's largest run at most, so the index's peak stays near its size.
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            newer, older = self._runs.pop(), self._runs.pop()
            at = np.searchsorted(older[0], newer[0])
            self._runs.append(tuple(np.insert(old, at, new) for old, new in zip(older, newer, strict=True)))
