import json
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from mlsm_nb.core.ids import IdIndex, RequestIds
from mlsm_nb.run.records import Rejected, read_records


def reference(ids):
    """What a dict of every id says: the first position of each repeated id."""
    first, out = {}, []
    for position, record_id in enumerate(ids):
        key = (type(record_id) is int, record_id)
        out.append(first.get(key))
        first.setdefault(key, position)
    return out


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=4),
                              st.sampled_from([1, "1", 0, "", "\ud83d", "\U0001F600", "\ud83d\ude00"])),
                    max_size=300),
       cuts=st.lists(st.integers(0, 300), max_size=12))
def test_index_agrees_with_a_dict_of_the_ids_however_the_input_is_cut(ids, cuts):
    bounds = sorted({0, len(ids), *(c for c in cuts if c < len(ids))})
    for index in (RequestIds(), IdIndex()):  # a request's (a dict) and a run's (digests): the same answers
        got = []
        for start, end in zip(bounds, bounds[1:], strict=False):
            got += index.earlier(ids[start:end], range(start, end))
        assert got == reference(ids), type(index).__name__
    assert len(index) == len({(type(i) is int, i) for i in ids})


def test_str_subclass_is_its_text_and_ints_are_not_strings():
    class Tag(str):
        pass

    class Odd(str):
        __radd__ = lambda self, other: "same"  # noqa: E731 - a subclass whose methods lie about its text

    class Seven(int):
        __int__ = lambda self: 8  # noqa: E731 - an int subclass that lies about its value

    for index in (IdIndex, RequestIds):
        assert index().earlier(["7", Tag("7"), 7, 7, Seven(7)], [1, 2, 3, 4, 5]) == [None, 1, None, 3, 3]
        assert index().earlier([Odd("a"), Odd("b"), "a"], [1, 2, 3]) == [None, None, 1]


def test_ids_cost_a_fraction_of_a_dict():
    ids = [f"lead-{i:08d}" for i in range(250_000)]
    tracemalloc.start()
    try:
        index = IdIndex()
        for start in range(0, len(ids), 4096):
            assert index.earlier(ids[start:start + 4096], range(start, start + 4096))[0] is None
        size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.earlier(["lead-00000007", "new"], [2_000_000, 2_000_001]) == [7, None]
    assert size < 7 * 2**20 and peak < 15 * 2**20  # a dict of these ids holds about 29 MiB


def test_duplicates_across_read_chunks_name_the_first_line(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [{"id": i % 5000, "data": {}} for i in range(10_000)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = list(read_records(path))
    assert [n for n, _ in rows] == list(range(1, 10_001))
    rejected = [r for _, r in rows if isinstance(r, Rejected)]
    assert [r.line for r in rejected] == list(range(5001, 10_001))
    assert rejected[0].reason == "duplicate id 0 (first on line 1)"
    assert rejected[-1].reason == "duplicate id 4999 (first on line 5000)"


def test_digests_that_share_their_first_half_are_told_apart(monkeypatch):
    from mlsm_nb.core import ids as ids_module

    real = ids_module._digest
    monkeypatch.setattr(ids_module, "_digest", lambda record_id: b"\x05" * 8 + real(record_id)[8:])
    ids = [f"x{i % 700}" for i in range(2000)] + list(range(300)) + ["x3", 5]
    index, got = IdIndex(), []
    for start in range(0, len(ids), 97):
        end = min(start + 97, len(ids))
        got += index.earlier(ids[start:end], range(start, end))
    assert got == reference(ids)
    assert len(index) == 1000
