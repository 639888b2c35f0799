"""The record ids an input has shown so far, and where each first appeared: about 24 bytes an id.

A dict of the ids themselves costs about 120 bytes an id (some 115 MiB for a
million records), so a reader's memory would grow with its input. This index
keeps a 128-bit BLAKE2b digest of each id, typed so that `1` and `"1"`
differ, in sorted numpy runs, merged as they grow (a log-structured set).
Two different ids share a digest with probability about n²/2¹²⁹, under
10⁻²¹ for a billion ids: a digest stands for its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import numpy as np

_PARTS = 16  # the index is cut in parts by digest so that merging one never copies much of it
_KEY = np.dtype("S16")  # every digest is 16 bytes, so numpy's null padding never makes two keys equal


def _digest(record_id: Any) -> bytes:
    text = "s" + record_id if isinstance(record_id, str) else "i%d" % record_id
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class IdIndex:
    """Ids seen so far (each a str or an int, see `core.records.id_problem`) and the position each first had."""

    def __init__(self) -> None:
        self._parts = [_SortedRuns() for _ in range(_PARTS)]

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def earlier(self, ids: Sequence[Any], positions: Sequence[int]) -> list[int | None]:
        """For each id (at its distinct `positions`, in input order), the position where it appeared first,
        in this call or an earlier one, when that is not its own (a duplicate); None for a new id. Learns the new ids."""
        digests = [_digest(record_id) for record_id in ids]
        first: dict[bytes, int] = {}
        for digest, position in zip(digests, positions):
            first.setdefault(digest, position)
        if first:
            keys = np.array(list(first), dtype=_KEY)
            firsts = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            known = np.full(len(keys), -1, dtype=np.int64)
            part_of = keys.view(np.uint8)[::16] % _PARTS  # digests are uniform: parts stay even
            for number, part in enumerate(self._parts):
                mine = np.flatnonzero(part_of == number)
                known[mine] = part.lookup(keys[mine])
                new = mine[known[mine] < 0]
                part.add(keys[new], firsts[new])
            for digest, position in zip(first, known.tolist()):
                if position >= 0:
                    first[digest] = position
        return [None if first[digest] == position else first[digest] for digest, position in zip(digests, positions)]


class _SortedRuns:
    """A set of digests with a position each, as sorted runs merged as they grow (a log-structured set)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted digests, their positions), largest first

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The position of each key, -1 for a key not in the set."""
        found = np.full(len(keys), -1, dtype=np.int64)
        for run_keys, run_positions in self._runs:
            at = np.searchsorted(run_keys, keys).clip(max=len(run_keys) - 1)
            hit = run_keys[at] == keys
            found[hit] = run_positions[at[hit]]
        return found

    def add(self, keys: np.ndarray, positions: np.ndarray) -> None:
        """Add new `keys` (none already in the set) with their positions."""
        if not len(keys):
            return
        order = np.argsort(keys)
        self._runs.append((keys[order], positions[order]))
        # Merge while the newest run is at least half its predecessor: O(log n) runs, each key merged
        # O(log n) times; a merge copies one part's largest run at most, so the index's peak stays near its size.
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            newer_keys, newer_positions = self._runs.pop()
            older_keys, older_positions = self._runs.pop()
            at = np.searchsorted(older_keys, newer_keys)
            self._runs.append((np.insert(older_keys, at, newer_keys), np.insert(older_positions, at, newer_positions)))
