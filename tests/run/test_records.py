import gzip
import re
import json

import pandas as pd
import pytest

from mlsm_nb.run.records import InputFileError, Rejected, read_records


def collect(path, id_field="id"):
    rows = list(read_records(path, id_field))
    good = [r for _, r in rows if not isinstance(r, Rejected)]
    bad = [r for _, r in rows if isinstance(r, Rejected)]
    return good, bad


def test_jsonl_plain_and_gzip(tmp_path):
    lines = [json.dumps({"id": i, "data": {"x": i}}) for i in range(3)]
    plain = tmp_path / "r.jsonl"
    plain.write_text("\n".join(lines) + "\n\n")
    packed = tmp_path / "r.jsonl.gz"
    with gzip.open(packed, "wt") as f:
        f.write("\n".join(lines))
    assert collect(plain)[0] == collect(packed)[0] == [{"id": i, "data": {"x": i}} for i in range(3)]


def test_bad_lines_are_rejected_with_line_number_and_reason(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([
        '{"id": "a", "data": {"x": 1}}',
        '{"id": "b", "data": {"x": 1',
        '{"data": {"x": 1}}',
        '{"id": "a", "data": {"x": 2}}',
        '[1, 2]',
        '{"id": "c", "data": 5}',
        '{"id": "d", "data": {"x": 3}}',
    ]))
    good, bad = collect(path)
    assert [r["id"] for r in good] == ["a", "d"]
    reasons = {b.line: b.reason for b in bad}
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "has no id field 'id'"
    assert reasons[4] == "duplicate id 'a' (first on line 1)"
    assert reasons[5] == "is a list, not a mapping"
    assert reasons[6] == "'data' must be a mapping, got int"


def test_csv_and_parquet_are_flat_with_none_for_missing(tmp_path):
    frame = pd.DataFrame({"lead_id": ["a", "b"], "x": [1.5, None], "name": ["n", None], "n": [1, 2]})
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_parquet(tmp_path / "r.parquet")
    for name in ("r.csv", "r.parquet"):
        good, bad = collect(tmp_path / name, "lead_id")
        assert bad == []
        assert good[1] == {"lead_id": "b", "data": {"x": None, "name": None, "n": 2}}
        assert type(good[0]["data"]["n"]) is int and type(good[0]["data"]["x"]) is float


@pytest.mark.parametrize("name, content, words", [
    ("missing.jsonl", None, "no such file"),
    ("empty.jsonl", "", "the file is empty"),
    ("blank.jsonl", "\n\n", "holds no records"),
    ("r.txt", "x", "unknown records format"),
    ("noid.csv", "x,y\n1,2\n", "no id column 'id' (columns: x, y)"),
    ("empty.csv", "\n", "the file is empty"),
])
def test_file_level_problems(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError, match=re.escape(words)) as info:
        list(read_records(path))
    assert str(path) in str(info.value)


def test_records_before_a_file_breaks_off_are_still_yielded(tmp_path, monkeypatch):
    from mlsm_nb.run import records

    def breaks_off(path):
        yield from ((n, {"id": n, "data": {}}) for n in range(1, 11))
        raise records.InputFileError(f"{path}: not a readable Parquet file: corrupt row group")

    monkeypatch.setattr(records, "_json_lines", breaks_off)
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "data": {}}\n')
    seen = []
    try:
        for number, _ in read_records(path):
            seen.append(number)
    except records.InputFileError as exc:
        assert "corrupt row group" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    assert seen == list(range(1, 11))


@pytest.mark.parametrize("count, fails_after", [(8, None), (9, None), (0, None), (8, 4), (9, 4), (3, 0)])
def test_chunks_yield_every_item_once_in_order_and_what_came_before_an_error(count, fails_after):
    from mlsm_nb.run.records import _chunks

    def items():
        for i in range(count):
            if i == fails_after:
                raise OSError("read error")
            yield i

    seen = []
    try:
        for chunk in _chunks(items(), 4):
            assert 0 < len(chunk) <= 4
            seen += chunk
    except OSError:
        assert fails_after is not None
    else:
        assert fails_after is None
    assert seen == list(range(count if fails_after is None else fails_after))
